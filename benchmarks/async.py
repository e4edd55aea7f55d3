"""Sync vs async (trainer.max_staleness = 1, 2) on the embedded default: steps per hour, reward against
step and against wall time, and the staleness histogram of the trained samples.

    .venv/bin/python benchmarks/async.py [--steps 30] [--ks 0 1 2] [--pin] [--out benchmarks/results/async]

Each k is one `rlsys train` run (same seed, same held-out evaluation before and after). --pin runs
them with the engines (and their vLLM processes) on CPU 0 and the learner ranks on CPU 1
(RLSYS_ROLLOUT_CPUS / RLSYS_LEARNER_CPUS, read by the workers at start), so generation and training
do not share a core and the overlap of async mode can show. Writes results.json and a markdown
table (results.md) under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(k: int, steps: int, out: Path, pin: bool, extra: list[str]) -> Path:
    env = dict(os.environ, **({"RLSYS_ROLLOUT_CPUS": "0", "RLSYS_LEARNER_CPUS": "1"} if pin else {}))
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "rlsys.train", f"trainer.steps={steps}", f"trainer.max_staleness={k}",
           "trainer.save_checkpoint=false", f"trainer.output_dir={out}", *extra]
    print("$", " ".join(cmd), "(pinned)" if pin else "", flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    (run_dir,) = [p for p in out.iterdir() if (p / "metrics.jsonl").exists()]
    return run_dir


def summarise(run_dir: Path) -> dict:
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    summary = json.loads((run_dir / "summary.json").read_text())
    wall, clock = 0.0, []
    for r in rows:
        wall += r["timing_s/step"]
        clock.append(round(wall, 2))
    stale = Counter()
    for step, path in enumerate(sorted((run_dir / "rollouts").glob("*.parquet")), start=1):
        for v in pq.read_table(path, columns=["policy_version"]).column(0).to_pylist():
            stale[step - 1 - v] += 1
    steady = [r["timing_s/step"] for r in rows[1:]]  # step 1 includes the engines' warm-up
    return {"run_dir": str(run_dir), "steps": len(rows), "seconds": round(wall, 1),
            "median_step_seconds": round(sorted(steady)[len(steady) // 2], 3) if steady else None,
            "steps_per_hour": round(3600 * len(steady) / max(sum(steady), 1e-9)) if steady else None,
            "reward_by_step": [round(r["critic/score/mean"], 3) for r in rows], "wall_by_step": clock,
            "held_out_before": (summary.get("held_out_before") or {}).get("reward_mean"),
            "held_out_after": (summary.get("held_out_after") or {}).get("reward_mean"),
            "staleness_histogram": dict(sorted(stale.items()))}


def table(results: dict) -> str:
    lines = ["| run | steps/hour (steps 2..N) | median step s | held-out before -> after | staleness histogram |",
             "|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['steps_per_hour']} | {r['median_step_seconds']} | {r['held_out_before']} -> "
                     f"{r['held_out_after']} | {r['staleness_histogram']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--ks", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pin", action="store_true", help="engines on CPU 0, learners on CPU 1")
    ap.add_argument("--out", default="benchmarks/results/async")
    ap.add_argument("overrides", nargs="*", help="more Hydra overrides for every run")
    args = ap.parse_args()
    out = Path(args.out)
    results = {}
    for k in args.ks:
        name = f"k={k}" + (" pinned" if args.pin else "")
        run_dir = run(k, args.steps, out / f"k{k}{'_pinned' if args.pin else ''}", args.pin, args.overrides)
        results[name] = summarise(run_dir)
        print(name, json.dumps({x: results[name][x] for x in ("steps_per_hour", "median_step_seconds",
                                                                "held_out_before", "held_out_after")}), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(table(results) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
