"""Two runs' trajectories, compared bitwise: `python scripts/compare_runs.py RUN_A RUN_B`.

RUN_* is a run directory (the one holding metrics.jsonl and rollouts/) or a parent of exactly one.
Rollouts: response tokens, behaviour log-probs, rewards, advantages, every step. Metrics: every
key except timings, memory and throughput (which vary with the machine). Exit 1 on any difference.
--common: compare only the metric keys both runs have (a newer version may log more), and list the others.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

COLUMNS = ("response_token_ids", "behaviour_logprobs", "reward", "advantages")
# wall-clock, speed and memory vary run to run; so does which syncs the weight probe checks (a time budget)
VARYING = ("timing_s/", "throughput", "memory_gb", "gbps", "seconds", "cores", "sync/probe_")


def run_dir(path: str) -> Path:
    found = sorted(p.parent for p in Path(path).rglob("metrics.jsonl"))
    if len(found) != 1:
        sys.exit(f"{path}: expected one run (metrics.jsonl), found {len(found)}")
    return found[0]


def compare(a: Path, b: Path, common: bool = False) -> list[str]:
    diffs = []
    steps_a, steps_b = sorted((a / "rollouts").glob("*.parquet")), sorted((b / "rollouts").glob("*.parquet"))
    if [p.name for p in steps_a] != [p.name for p in steps_b]:
        diffs.append(f"rollout files differ: {len(steps_a)} vs {len(steps_b)}")
    for pa_, pb_ in zip(steps_a, steps_b):
        ta, tb = pq.read_table(pa_), pq.read_table(pb_)
        for col in COLUMNS:
            if ta.column(col).to_pylist() != tb.column(col).to_pylist():
                diffs.append(f"{pa_.name}: column {col} differs")
    ma = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines() if line.strip()]
    mb = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines() if line.strip()]
    for x, y in zip(ma, mb):
        for k in sorted(set(x) & set(y) if common else set(x) | set(y)):
            if any(v in k for v in VARYING):
                continue
            if x.get(k) != y.get(k):
                diffs.append(f"step {x['step']}: {k} {x.get(k)!r} != {y.get(k)!r}")
    if len(ma) != len(mb):
        diffs.append(f"metrics: {len(ma)} vs {len(mb)} steps")
    return diffs


def only_in_one(a: Path, b: Path) -> tuple[set, set]:
    keys = [set(json.loads((r / "metrics.jsonl").read_text().splitlines()[0])) for r in (a, b)]
    return keys[0] - keys[1], keys[1] - keys[0]


if __name__ == "__main__":
    args = [x for x in sys.argv[1:] if x != "--common"]
    common = "--common" in sys.argv
    a, b = run_dir(args[0]), run_dir(args[1])
    diffs = compare(a, b, common)
    if common:
        only_a, only_b = only_in_one(a, b)
        print(f"metrics only in {a.name}: {sorted(only_a)}\nmetrics only in {b.name}: {sorted(only_b)}")
    print("\n".join(diffs) if diffs else f"bitwise identical: {a} vs {b} ({', '.join(COLUMNS)}; metrics)")
    sys.exit(1 if diffs else 0)
