"""An LLM judge in the loop, standalone against colocated, with a rules-only run as the baseline, back to
back on this machine:

    .venv/bin/python benchmarks/reward_models.py [--steps N] [--out benchmarks/results/reward_models]
        [-- HYDRA_OVERRIDES ...]

Every run is `rlsys train model=smollm2_135m` (the preset's word problems, 4 prompts x 8 samples of up to
96 tokens per step) with the same seed and no held-out evaluation. The judge runs use conf/verifier/judge.yaml
without its gate (every sample goes to the judge: reward = math + 0.25 x the judge's yes), placement
standalone (its own actor; groups are judged while the fleet still generates) or colocated (the judge
waits until the fleet has finished; on GPU it would sleep meanwhile). From each run's metrics.jsonl
(steps 2..N; step 1 carries start-up effects) it reports:
- the judge's tokens/s (prompt tokens read and tokens generated, per second of its calls) against the
  policy's generation tokens/s in the same run (perf/gen_throughput);
- step wall time, the stage sum (generation + scoring + reference + training + sync) and their difference,
  the seconds stages overlapped; scoring's share hidden behind generation = that overlap / scoring seconds
  (the reference is off in this workload, so scoring is the only stage that can overlap generation).
  Training time is not comparable across the runs: the judge's term makes more groups informative (a group
  whose rewards are all equal has zero advantage and its samples are skipped), so more samples are trained.
Writes OUT/results.json and OUT/table.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNGATED = "verifier.combine.math.gate=null"


def run(name: str, overrides: list[str], out: Path) -> dict:
    cmd = [str(ROOT / ".venv/bin/rlsys"), "train", "model=smollm2_135m", f"hydra.run.dir={out / name}",
           "trainer.save_checkpoint=false", "eval.before_after_samples=0", *overrides]
    print("$", " ".join(cmd), flush=True)
    shutil.rmtree(out / name, ignore_errors=True)  # metrics.jsonl appends: a re-run starts from nothing
    with open(out / f"{name}.log", "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        sys.exit(f"{name} failed (exit {rc}): see {out / f'{name}.log'}")
    rows = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines() if x.strip()]
    later = rows[1:] or rows
    mean = lambda key: statistics.mean(r.get(key, 0.0) for r in later)  # noqa: E731
    total = lambda key: sum(r.get(key, 0.0) for r in later)  # noqa: E731
    judge_s = total("verify/judge_seconds")
    return {
        "command": " ".join(cmd), "step_s": mean("timing_s/step"), "stage_sum_s": mean("timing_s/stage_sum"),
        "gen_s": mean("timing_s/gen"), "scoring_s": mean("timing_s/reward"), "train_s": mean("timing_s/update_actor"),
        "policy_tok_s": mean("perf/gen_throughput"), "judged_per_step": mean("verify/judge_samples"),
        "judge_s": judge_s / max(1, len(later)),
        "judge_gen_tok_s": total("verify/judge_tokens") / judge_s if judge_s else None,
        "judge_read_tok_s": total("verify/judge_prompt_tokens") / judge_s if judge_s else None,
        "reward": [round(r["critic/score/mean"], 4) for r in rows],
    }


def table(res: dict) -> str:
    lines = ["| | rules only | judge standalone | judge colocated |", "|---|---|---|---|"]

    def row(label, key, fmt="{:.1f}"):
        cells = [("-" if res[n].get(key) is None else fmt.format(res[n][key])) for n in ("rules", "standalone", "colocated")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("step wall (s)", "step_s")
    row("stage sum (s)", "stage_sum_s")
    row("generation (s)", "gen_s")
    row("scoring, wall of the verify calls (s)", "scoring_s")
    row("judge calls, summed (s)", "judge_s")
    row("samples judged per step", "judged_per_step", "{:.0f}")
    row("policy generation (tokens/s)", "policy_tok_s", "{:.0f}")
    row("judge generation (tokens/s)", "judge_gen_tok_s", "{:.1f}")
    row("judge prompt reading (tokens/s)", "judge_read_tok_s", "{:.0f}")
    row("training (s; more informative groups with the judge's term)", "train_s")
    for n in ("standalone", "colocated"):
        r = res[n]
        r["overlap_s"] = r["stage_sum_s"] - r["step_s"]
        r["hidden"] = min(1.0, max(0.0, r["overlap_s"] / r["scoring_s"])) if r["scoring_s"] else None
    rules = res["rules"]
    lines.append(f"| stages overlapped: stage sum - wall (s) | {rules['stage_sum_s'] - rules['step_s']:.1f} | "
                 f"{res['standalone']['overlap_s']:.1f} | {res['colocated']['overlap_s']:.1f} |")
    lines.append(f"| scoring hidden behind generation (overlap / scoring) | - | "
                 f"{res['standalone']['hidden']:.2f} | {res['colocated']['hidden']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/reward_models"))
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    common = [f"trainer.steps={a.steps}", *a.overrides]
    judge = ["verifier=judge", UNGATED, *common]
    res = {"rules": run("rules", common, out),
           "standalone": run("standalone", [*judge, "verifier.models.judge.placement=standalone"], out),
           "colocated": run("colocated", [*judge, "verifier.models.judge.placement=colocated"], out)}
    text = table(res)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    (out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
