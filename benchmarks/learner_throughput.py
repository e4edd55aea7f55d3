"""Training tokens/s of one learner step on SmolLM2-135M: 1 and 2 FSDP2 ranks, padded vs packed,
against a plain single-process HF forward/backward + AdamW step of the same batch on the same
cores (the ceiling: the faster of two plain variants, all logits or the LM head on response
positions only), all measured in the same run, each case in fresh processes.

    .venv/bin/python benchmarks/learner_throughput.py [--samples 32] [--reps 2] [--ranks 1 2]

The batch is the real model preset's step (8 prompts x 4 samples): prompts of 60-80 tokens,
responses of 20-96 (random token ids). Tokens/s counts real tokens (prompt + response) per
second of the whole step (every micro-batch, gradient sync, optimizer step), median of --reps
steps after one warm-up step. "padded": rows padded to the longest of a micro-batch of
--mbs samples (the learner before packing). "packed": one padding-free row per micro-batch of
at most --max-tokens tokens per rank. Ranks use node_cores / ranks threads each (cluster.threads
=auto: the learners train alone). "cores" = process CPU time / wall time, summed over ranks. On a
GPU the same script also prints MFU (6 x params x tokens / s over --peak-tflops), never run there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def synthetic(samples: int, vocab: int, seed: int = 0):
    import numpy as np

    from rlsys.data.batch import RolloutBatch

    rng = np.random.default_rng(seed)
    plen, rlen = rng.integers(60, 81, samples), rng.integers(20, 97, samples)
    ids = lambda n: rng.integers(10, vocab, n)  # noqa: E731
    f32 = lambda n, s, m: (rng.standard_normal(n) * s + m).astype(np.float32)  # noqa: E731
    return RolloutBatch(
        prompt_id=np.arange(samples), group_id=np.arange(samples) // 4, sample_index=np.arange(samples) % 4,
        prompt_token_ids=[ids(p) for p in plen], response_token_ids=[ids(r) for r in rlen],
        behaviour_logprobs=[f32(r, 0.5, -2.0) for r in rlen], policy_version=np.zeros(samples, np.int64),
        finish_reason=["stop"] * samples, response_text=[""] * samples, ground_truth=[""] * samples,
        data_source=[""] * samples, reward=rng.integers(0, 2, samples).astype(np.float32),
        advantages=[np.full(r, rng.standard_normal(), np.float32) for r in rlen])


def model_tokens(batch, mode: str, mbs: int, max_tokens: int, world: int) -> int:
    """Tokens the model runs over (padding included) for the whole batch."""
    from rlsys.data.batch import split_balanced
    from rlsys.learner.microbatch import micro_batch_count, plan, sample_tokens

    lengths, total = sample_tokens(batch), 0
    shards = split_balanced(batch, world)
    budget = max_tokens if mode == "packed" else 0
    k = max(micro_batch_count(lengths[s], mbs, budget) for s in shards)
    for s in shards:
        for idx in plan(lengths[s], k, budget):
            part = lengths[s][idx] if len(idx) else lengths[s][:1]
            total += int(part.sum()) if mode == "packed" else int(len(part) * part.max())
    return total


def learner_rank(a) -> dict:
    import torch.distributed as dist

    from rlsys.config import RLSysConfig
    from rlsys.data.batch import split_balanced
    from rlsys.learner.microbatch import micro_batch_count, sample_tokens
    from rlsys.learner.losses import Denominators
    from rlsys.learner.role_config import learner_role_config
    from rlsys.learner.worker import LearnerWorker

    cfg = RLSysConfig()
    lc = cfg.learner
    lc.world_size, lc.micro_batch_size, lc.packed = a.world, a.mbs, a.mode == "packed"
    lc.max_tokens_per_micro_batch = a.max_tokens if a.mode == "packed" else 0
    lc.activation_checkpointing = a.checkpointing
    cfg.algorithm.optim.lr = 1e-6
    w = LearnerWorker(learner_role_config(cfg), a.model, a.rank, a.world)
    w.setup("127.0.0.1", a.port)
    batch = synthetic(a.samples, w.model.config.vocab_size)
    shards, lengths = split_balanced(batch, a.world), sample_tokens(batch)
    num_micro = max(micro_batch_count(lengths[s], lc.micro_batch_size, lc.max_tokens_per_micro_batch) for s in shards)
    rl = batch.response_lengths
    denom = Denominators(tokens=float(rl.sum()), sequences=float(len(batch)), max_len=96.0)
    times, cores = [], []
    for _ in range(1 + a.reps):
        dist.barrier()
        t0 = time.perf_counter()
        stats = w.train_step(batch.select(shards[a.rank]), denom, num_micro)
        dist.barrier()
        times.append(time.perf_counter() - t0)
        cores.append(stats["train_cpu_seconds"] / stats["train_seconds"])
    w.shutdown()
    return {"rank": a.rank, "seconds": statistics.median(times[1:]), "cores": statistics.median(cores[1:]),
            "threads": w.threads, "num_micro": num_micro, "tokens": int(lengths.sum()),
            "model_tokens": model_tokens(batch, a.mode, lc.micro_batch_size, lc.max_tokens_per_micro_batch, a.world),
            "peak_gb": stats["perf/max_memory_gb"]}


def plain_logprobs(model, x, head_only_responses: bool):
    """Plain HF log-probs of the response tokens: all logits (the usual way), or the LM head applied
    to the response positions only (what a careful single-process trainer does)."""
    import torch

    if not head_only_responses:
        logits = model(input_ids=x.input_ids, attention_mask=x.attention_mask, use_cache=False).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, x.input_ids[:, 1:, None])[..., 0]
        return logp[x.positions[:, 1:]]
    hidden = model.model(input_ids=x.input_ids, attention_mask=x.attention_mask, use_cache=False).last_hidden_state
    where = x.positions[:, 1:]
    logits = model.lm_head(hidden[:, :-1][where]).float()
    return torch.log_softmax(logits, -1).gather(-1, x.input_ids[:, 1:][where][:, None])[:, 0]


def ceiling(a) -> dict:
    """Plain HF forward/backward + AdamW in one process on every core, padded micro-batches of --mbs."""
    import torch
    from transformers import AutoModelForCausalLM

    from rlsys.learner.microbatch import sample_tokens
    from rlsys.learner.packing import padded_inputs
    from rlsys.runtime.threads import CoreUse, node_cores

    torch.set_num_threads(node_cores())
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="sdpa")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    batch = synthetic(a.samples, model.config.vocab_size)
    times, cores = [], []
    for _ in range(1 + a.reps):
        with CoreUse() as use:
            for s in range(0, len(batch), a.mbs):
                x = padded_inputs(batch.prompt_token_ids[s:s + a.mbs], batch.response_token_ids[s:s + a.mbs], 0)
                (-plain_logprobs(model, x, a.one == "ceiling_head").sum() / len(batch)).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        times.append(use.wall)
        cores.append(use.cores)
    lengths = sample_tokens(batch)
    return {"rank": 0, "seconds": statistics.median(times[1:]), "cores": statistics.median(cores[1:]),
            "threads": torch.get_num_threads(), "num_micro": -(-len(batch) // a.mbs), "tokens": int(lengths.sum()),
            "model_tokens": model_tokens(batch, "padded", a.mbs, 0, 1), "peak_gb": float("nan")}


def launch(args, mode: str, world: int) -> list[dict]:
    from rlsys.runtime.net import free_address

    port = free_address()[1]
    common = ["--model", args.model, "--samples", str(args.samples), "--reps", str(args.reps), "--mbs", str(args.mbs),
              "--max-tokens", str(args.max_tokens)] + (["--checkpointing"] if args.checkpointing else [])
    procs = [subprocess.Popen([sys.executable, __file__, "--one", mode, "--rank", str(r), "--world", str(world),
                               "--port", str(port), *common], stdout=subprocess.PIPE, text=True)
             for r in range(world)]
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise RuntimeError(f"{mode} x{world} rank failed (exit {p.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def summarise(label: str, ranks: list[dict], ceiling_tps: float | None, args) -> dict:
    seconds = max(r["seconds"] for r in ranks)
    row = {"case": label, "ranks": len(ranks), "threads_per_rank": ranks[0]["threads"], "micro_batches": ranks[0]["num_micro"],
           "tokens": ranks[0]["tokens"], "model_tokens": ranks[0]["model_tokens"], "seconds": seconds,
           "tokens_per_s": ranks[0]["tokens"] / seconds, "cores": sum(r["cores"] for r in ranks),
           "peak_gb": max(r["peak_gb"] for r in ranks)}
    row["vs_ceiling"] = row["tokens_per_s"] / ceiling_tps if ceiling_tps else 1.0
    if args.peak_tflops:
        row["mfu"] = 6 * args.params * row["tokens_per_s"] / (args.peak_tflops * 1e12)
    return row


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--mbs", type=int, default=8, help="padded: samples per micro-batch (the preset's)")
    p.add_argument("--max-tokens", type=int, default=4096, help="packed: tokens per micro-batch per rank")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--modes", nargs="+", default=["padded", "packed"])
    p.add_argument("--checkpointing", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="GPU: dense peak for MFU (e.g. 989 for H100 bf16)")
    p.add_argument("--params", type=float, default=134.5e6)
    p.add_argument("--model", default=None, help="HF dir (default: the smollm2_135m preset's conversion)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--world", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.model is None:
        from omegaconf import OmegaConf

        from rlsys.models.gguf import cached_conversion

        preset = OmegaConf.load("conf/model/smollm2_135m.yaml").model
        args.model = str(cached_conversion(preset.gguf, "~/.cache/rlsys", preset.gguf_sha256))
    if args.one:
        print(json.dumps(ceiling(args) if args.one.startswith("ceiling") else learner_rank(
            argparse.Namespace(**{**vars(args), "mode": args.one}))))
        return
    plain = [summarise("plain HF, full logits", launch(args, "ceiling", 1), None, args),
             summarise("plain HF, head on responses", launch(args, "ceiling_head", 1), None, args)]
    ceil = max(plain, key=lambda r: r["tokens_per_s"])
    for r in plain:
        r["vs_ceiling"] = r["tokens_per_s"] / ceil["tokens_per_s"]
    rows = plain + [summarise(f"rlsys {m}", launch(args, m, w), ceil["tokens_per_s"], args)
                     for w in args.ranks for m in args.modes]
    print(f"{'case':<30} {'ranks':>5} {'thr/rank':>8} {'micro':>5} {'model tok':>9} {'s/step':>7} "
          f"{'tok/s':>7} {'x ceiling':>9} {'cores':>6} {'peak GB':>7}")
    for r in rows:
        print(f"{r['case']:<30} {r['ranks']:>5} {r['threads_per_rank']:>8} {r['micro_batches']:>5} "
              f"{r['model_tokens']:>9} {r['seconds']:>7.2f} {r['tokens_per_s']:>7.1f} {r['vs_ceiling']:>9.2f} "
              f"{r['cores']:>6.2f} {r['peak_gb']:>7.2f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
