"""Packed (padding-free) rows give the padded path's log-probs, entropies and gradients."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from rlsys.learner import packing as P
from rlsys.learner.logprobs import install_logprob_head
from rlsys.models.tiny import build_tiny_model


def test_packed_layout_by_hand():
    x = P.packed_inputs([np.array([1, 2]), np.array([3])], [np.array([4, 5, 6]), np.array([7])])
    assert x.input_ids.tolist() == [[1, 2, 4, 5, 6, 3, 7]]
    assert x.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1]]
    assert x.cu_seq_lens.tolist() == [0, 5, 7] and x.max_length == 5
    assert x.positions.tolist() == [[False, False, True, True, True, False, True]]
    assert x.mask.tolist() == [[True, True, True], [True, False, False]]
    assert x.index[x.mask].tolist() == [2, 3, 4, 6]
    y = P.padded_inputs([np.array([1, 2]), np.array([3])], [np.array([4, 5, 6]), np.array([7])], pad_id=0)
    assert y.input_ids.tolist() == [[1, 2, 4, 5, 6], [3, 7, 0, 0, 0]]
    assert y.index[y.mask].tolist() == [2, 3, 4, 6]  # row 1 starts at flat position 5
    values = torch.arange(7.0)[None]
    assert x.to_responses(values).tolist() == [[2.0, 3.0, 4.0], [6.0, 0.0, 0.0]]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    build_tiny_model(32, 2, 4, vocab_size=61, seed=3).save_pretrained(path)
    return path


def batch(seed: int, n: int = 7, vocab: int = 61):
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(2, vocab, rng.integers(1, 12)) for _ in range(n)]
    responses = [rng.integers(2, vocab, rng.integers(0, 15)) for _ in range(n)]
    responses[0] = responses[0][:1]  # a one-token response
    return prompts, responses


def load(path, attn: str):
    torch.manual_seed(0)
    return install_logprob_head(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                                     attn_implementation=attn))


def score(model, inputs):
    out = P.response_logprobs(model, inputs, 0.7, with_entropy=True, proxy_kappa=0.05)
    proxy = torch.where(torch.isfinite(out.logp_proxy), out.logp_proxy, torch.zeros_like(out.logp_proxy))
    loss = (out.logp * inputs.mask).sum() + 0.3 * (out.entropy * inputs.mask).sum()
    grads = torch.autograd.grad(loss, [p for p in model.parameters()])
    return out.logp.detach(), out.entropy.detach(), proxy, grads


@pytest.mark.parametrize("attn", [P.VARLEN_SDPA, "eager", "sdpa"])
@pytest.mark.parametrize("seed", [0, 1])
def test_packed_equals_padded(tiny_dir, attn, seed):
    """Same samples: one padded row each (sdpa, attention mask) vs one packed row (each attention
    implementation: per-sample SDPA, transformers' block-diagonal masks)."""
    prompts, responses = batch(seed)
    padded = P.padded_inputs(prompts, responses, pad_id=0)
    packed = P.packed_inputs(prompts, responses)
    assert packed.num_tokens == sum(len(p) + len(r) for p, r in zip(prompts, responses)) < padded.num_tokens
    want = score(load(tiny_dir, "sdpa"), padded)
    got = score(load(tiny_dir, attn), packed)
    assert torch.equal(padded.mask, packed.mask)
    for g, w in zip(got[:3], want[:3]):
        assert torch.allclose(g, w, atol=1e-5, rtol=0)
    for g, w in zip(got[3], want[3]):
        assert torch.allclose(g, w, atol=1e-5, rtol=1e-5)
    # and against the definition, sample by sample: each response scored alone, no padding at all
    solo_model = load(tiny_dir, "sdpa")
    for i, (p, r) in enumerate(zip(prompts, responses)):
        solo = P.padded_inputs([p], [r], pad_id=0)
        logp = P.response_logprobs(solo_model, solo, 0.7).logp[0, :len(r)].detach()
        assert torch.allclose(got[0][i, :len(r)], logp, atol=1e-5, rtol=0)


def test_varlen_attention_does_not_cross_samples(tiny_dir):
    """Changing sample 0 changes nothing of sample 1's log-probs in the packed row."""
    prompts, responses = batch(5, n=2)
    model = load(tiny_dir, P.VARLEN_SDPA)
    with torch.no_grad():
        a = P.response_logprobs(model, P.packed_inputs(prompts, responses), 1.0).logp
        prompts[0] = (prompts[0] + 1) % 61
        b = P.response_logprobs(model, P.packed_inputs(prompts, responses), 1.0).logp
    assert torch.equal(a[1], b[1]) and not torch.equal(a[0], b[0])


def test_resolve_attn_implementation(monkeypatch):
    assert P.resolve_attn_implementation("auto", "cpu", packed=True) == P.VARLEN_SDPA
    assert P.resolve_attn_implementation("auto", "cpu", packed=False) == "sdpa"
    assert P.resolve_attn_implementation("eager", "cpu", packed=True) == "eager"
    with pytest.raises(ValueError, match="flash_attention_2 needs a CUDA device"):
        P.resolve_attn_implementation("flash_attention_2", "cpu", packed=True)
    monkeypatch.setattr(P, "flash_attn_available", lambda: True)
    assert P.resolve_attn_implementation("auto", "cuda", packed=True) == "flash_attention_2"
    monkeypatch.setattr(P, "flash_attn_available", lambda: False)
    assert P.resolve_attn_implementation("auto", "cuda", packed=True) == P.VARLEN_SDPA
