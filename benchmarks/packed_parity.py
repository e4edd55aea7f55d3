"""Log-prob parity of packed rows vs padded rows on real rollouts of the 135M model (not test data).

    .venv/bin/python benchmarks/packed_parity.py runs/<run>/rollouts/step_000001.parquet [...]

For every rollout file (a training step's batch as the controller logs it): the response tokens'
log-probs at T=1 from padded micro-batches of --mbs samples (sdpa, attention mask) and from packed
rows of at most --max-tokens tokens (per-sample SDPA over position ids); as scales, the padded
path against itself with one sample per micro-batch (fp32 summation-order noise of other matmul
shapes) and the engine's behaviour log-probs. Prints the largest absolute differences.
"""

from __future__ import annotations

import argparse

import numpy as np


def score(model, prompts, responses, packed: bool, mbs: int, max_tokens: int) -> list[np.ndarray]:
    import torch

    from rlsys.learner.logprobs import unpad_per_token
    from rlsys.learner.microbatch import first_fit
    from rlsys.learner.packing import model_inputs, response_logprobs

    lengths = np.array([len(p) + len(r) for p, r in zip(prompts, responses)])
    chunks = first_fit(lengths, max_tokens) if packed else [list(range(s, min(s + mbs, len(prompts))))
                                                            for s in range(0, len(prompts), mbs)]
    out: list = [None] * len(prompts)
    for idx in chunks:
        x = model_inputs([prompts[i] for i in idx], [responses[i] for i in idx], 0, packed)
        with torch.no_grad():
            logp = response_logprobs(model, x, 1.0).logp
        for i, v in zip(idx, unpad_per_token(logp, x.mask)):
            out[i] = v
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("rollouts", nargs="+")
    p.add_argument("--mbs", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=1024)
    p.add_argument("--model", default=None)
    args = p.parse_args()
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoModelForCausalLM

    from rlsys.learner.logprobs import install_logprob_head
    from rlsys.learner.packing import VARLEN_SDPA

    if args.model is None:
        from omegaconf import OmegaConf

        from rlsys.models.gguf import cached_conversion

        preset = OmegaConf.load("conf/model/smollm2_135m.yaml").model
        args.model = str(cached_conversion(preset.gguf, "~/.cache/rlsys", preset.gguf_sha256))
    models = {impl: install_logprob_head(AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.float32, attn_implementation=impl)).eval() for impl in ("sdpa", VARLEN_SDPA)}
    for path in args.rollouts:
        d = pq.read_table(path).to_pydict()
        prompts = [np.asarray(x, np.int64) for x in d["prompt_token_ids"]]
        responses = [np.asarray(x, np.int64) for x in d["response_token_ids"]]
        padded = score(models["sdpa"], prompts, responses, False, args.mbs, args.max_tokens)
        packed = score(models[VARLEN_SDPA], prompts, responses, True, args.mbs, args.max_tokens)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(padded, packed))
        # the fp32 noise floor: the same padded path with another micro-batch shape (one sample per row batch)
        solo = score(models["sdpa"], prompts, responses, False, 1, args.max_tokens)
        floor = max(float(np.abs(a - b).max()) for a, b in zip(padded, solo))
        at = max(((np.abs(a - b).max(), a[np.abs(a - b).argmax()]) for a, b in zip(padded, packed)))[1]
        engine = max(float(np.abs(a - np.asarray(b)).max()) for a, b in zip(padded, d["behaviour_logprobs"]))
        tokens = sum(len(r) for r in responses)
        print(f"{path}: {len(prompts)} samples, {tokens} response tokens; max |packed - padded| = {diff:.2e}; "
              f"(at a token of log-prob {at:.2f}); padded mbs={args.mbs} vs mbs=1: {floor:.2e}; "
              f"max |padded - engine| = {engine:.2e} (policy moved after step 1)")


if __name__ == "__main__":
    main()
