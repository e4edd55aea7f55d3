"""The chunked log-prob head equals the plain full-logits computation, values and gradients."""

import math

import numpy as np
import pytest
import torch

from rlsys.learner import logprobs as lp
from rlsys.models.tiny import build_tiny_model


def reference_values(model, ids, attn, temperature, kappa):
    """Straight from the definition: full [B, L, V] logits, log-softmax, gather."""
    logits = torch.nn.functional.linear(model.model(input_ids=ids, attention_mask=attn).last_hidden_state,
                                        model.get_output_embeddings().weight)[:, :-1].float() / temperature
    logp_all = torch.log_softmax(logits, -1)
    logp = torch.gather(logp_all, -1, ids[:, 1:, None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    kept = logp_all >= logp_all.max(-1, keepdim=True).values + math.log(kappa)
    log_z = torch.logsumexp(logp_all.masked_fill(~kept, -math.inf), -1)
    proxy = torch.where(torch.gather(kept, -1, ids[:, 1:, None]).squeeze(-1), logp - log_z, -math.inf)
    return logp, entropy, proxy


@pytest.mark.parametrize("chunk_elements", [10**9, 97 * 3])  # one chunk; 3 tokens per chunk
def test_chunked_head_matches_full_logits(monkeypatch, chunk_elements):
    monkeypatch.setattr(lp, "CHUNK_ELEMENTS", chunk_elements)
    torch.manual_seed(0)
    model = lp.install_logprob_head(build_tiny_model(32, 2, 4, vocab_size=97))
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied: one parameter
    ids = torch.randint(0, 97, (3, 11))
    attn = torch.ones_like(ids)
    attn[2, 8:] = 0
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[0, 4:] = positions[1, 6:] = positions[2, 5:8] = True  # response tokens
    want = reference_values(model, ids, attn, 0.7, 0.05)
    mask = positions[:, 1:]
    loss_ref = (want[0][mask].sum() + 0.3 * want[1][mask].sum())
    grads_ref = torch.autograd.grad(loss_ref, list(model.parameters()))

    out = lp.token_logprobs(model, ids, attn, 0.7, with_entropy=True, proxy_kappa=0.05, positions=positions)
    for got, ref in zip(out, want):
        assert torch.allclose(got[:, 1:][mask], ref[mask], atol=1e-5, equal_nan=False)
    assert (out.logp[~positions] == 0).all()  # nothing outside the asked positions
    loss = out.logp[positions].sum() + 0.3 * out.entropy[positions].sum()
    for g, r in zip(torch.autograd.grad(loss, list(model.parameters())), grads_ref):
        assert torch.allclose(g, r, atol=1e-5)


def test_head_without_a_request_gives_logits():
    model = lp.install_logprob_head(build_tiny_model(32, 2, 4, vocab_size=50))
    ids = torch.randint(0, 50, (2, 7))
    logits = model(input_ids=ids).logits
    assert logits.shape == (2, 7, 50)
    assert np.allclose(logits.detach().numpy(), (model.model(input_ids=ids).last_hidden_state
                                                  @ model.lm_head.weight.T).detach().numpy(), atol=1e-5)
