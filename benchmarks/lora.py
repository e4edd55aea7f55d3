"""LoRA against full fine-tuning on the real model, one run each, back to back on this machine:

    .venv/bin/python benchmarks/lora.py [--steps N] [--rank 8] [--lr-full 2e-5] [--lr-lora 2e-4]
        [--out benchmarks/results/lora] [-- HYDRA_OVERRIDES ...]

Both run `rlsys train model=smollm2_135m` (the preset's workload, its held-out pass@1 before and after)
with the same seed; LoRA adds learner.lora.rank=R at --lr-lora ("LoRA without regret": about 10x the
full fine-tuning rate; alpha 32). From each run's metrics.jsonl and summary.json it reports:
- sync: bytes per sync (perf/update_weights_gb) and seconds (timing_s/update_weights, the probe included;
  timing_s/check_weights apart), the path taken (adapter / full);
- learner memory: parameters (frozen included), trainable parameters, gradients and optimizer state, all
  ranks together (perf/learner_*_gb), and the fullest rank's peak resident memory (perf/max_memory_gb);
- step time (mean of steps 2..N: step 1 carries start-up effects) and generation throughput;
- the learning curve: training accuracy per step, held-out pass@1 before and after.
Ratios are LoRA / full, measured in the same invocation. Writes OUT/results.json and OUT/table.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(name: str, overrides: list[str], out: Path) -> dict:
    cmd = [str(ROOT / ".venv/bin/rlsys"), "train", "model=smollm2_135m", f"hydra.run.dir={out / name}",
           "trainer.save_checkpoint=false", *overrides]
    print("$", " ".join(cmd), flush=True)
    with open(out / f"{name}.log", "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        sys.exit(f"{name} failed (exit {rc}): see {out / f'{name}.log'}")
    rows = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines() if x.strip()]
    summary = json.loads((out / name / "summary.json").read_text())
    later = rows[1:] or rows
    mean = lambda key, rs=later: statistics.mean(r.get(key, 0.0) for r in rs)  # noqa: E731
    return {
        "command": " ".join(cmd),
        "sync_bytes": rows[-1]["perf/update_weights_gb"] * 1e9,
        "sync_s": mean("timing_s/update_weights"), "check_s": mean("timing_s/check_weights"),
        "probed_steps": sum("sync/probe_gap" in r for r in rows),
        "adapter_path": rows[-1]["perf/update_weights_adapter"] == 1.0,
        "params_gb": rows[-1]["perf/learner_params_gb"], "trainable_gb": rows[-1]["perf/learner_trainable_gb"],
        "grads_gb": rows[-1]["perf/learner_grads_gb"], "optimizer_gb": rows[-1]["perf/learner_optimizer_gb"],
        "learner_peak_gb": max(r["perf/max_memory_gb"] for r in rows),
        "step_s": mean("timing_s/step"), "gen_tok_s": mean("perf/gen_throughput"),
        "train_accuracy": [round(r["critic/score/accuracy"], 4) for r in rows],
        "held_out_before": summary["held_out_before"]["accuracy"], "held_out_after": summary["held_out_after"]["accuracy"],
    }


def table(full: dict, lora: dict, rank: int) -> str:
    def state(r, trainable_only=False):
        return (0.0 if trainable_only else r["params_gb"] - r["trainable_gb"]) + r["trainable_gb"] + r["grads_gb"] + \
            r["optimizer_gb"]

    rows = [
        ("bytes per sync", f"{full['sync_bytes'] / 1e6:.1f} MB", f"{lora['sync_bytes'] / 1e6:.2f} MB",
         lora["sync_bytes"] / full["sync_bytes"]),
        ("seconds per sync (probe included)", f"{full['sync_s']:.3f}", f"{lora['sync_s']:.3f}", lora["sync_s"] / full["sync_s"]),
        ("of which the probe (s)", f"{full['check_s']:.3f}", f"{lora['check_s']:.3f}", None),
        ("trainable params + grads + optimizer (GB, all ranks)", f"{state(full, True):.3f}", f"{state(lora, True):.4f}",
         state(lora, True) / state(full, True)),
        ("all params + grads + optimizer (GB, frozen base included)", f"{state(full):.3f}", f"{state(lora):.3f}",
         state(lora) / state(full)),
        ("learner peak resident memory (GB, fullest rank)", f"{full['learner_peak_gb']:.2f}", f"{lora['learner_peak_gb']:.2f}",
         lora["learner_peak_gb"] / full["learner_peak_gb"]),
        ("step time (s, mean of steps 2..N)", f"{full['step_s']:.1f}", f"{lora['step_s']:.1f}", lora["step_s"] / full["step_s"]),
        ("generation (tokens/s)", f"{full['gen_tok_s']:.0f}", f"{lora['gen_tok_s']:.0f}", lora["gen_tok_s"] / full["gen_tok_s"]),
        ("held-out pass@1 before -> after", f"{full['held_out_before']:.3f} -> {full['held_out_after']:.3f}",
         f"{lora['held_out_before']:.3f} -> {lora['held_out_after']:.3f}", None),
    ]
    lines = [f"| | full fine-tuning | LoRA rank {rank} | LoRA / full |", "|---|---|---|---|"]
    lines += [f"| {k} | {a} | {b} | {'' if r is None else f'{r:.3f}'} |" for k, a, b, r in rows]
    lines += ["", "training accuracy per step:", f"- full: {full['train_accuracy']}", f"- LoRA: {lora['train_accuracy']}"]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=0, help="RL steps (0: the preset's)")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--lr-full", type=float, default=2e-5, help="the preset's")
    p.add_argument("--lr-lora", type=float, default=2e-4)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/lora"))
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = [*([f"trainer.steps={args.steps}"] if args.steps else []), *args.overrides]
    full = run("full", [f"algorithm.optim.lr={args.lr_full}", *common], out)
    lora = run("lora", [f"algorithm.optim.lr={args.lr_lora}", f"learner.lora.rank={args.rank}", *common], out)
    text = table(full, lora, args.rank)
    (out / "results.json").write_text(json.dumps({"full": full, "lora": lora}, indent=1))
    (out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
