"""Negative sample reinforcement in miniature (Zhu et al. 2025, "The Surprising Effectiveness of
Negative Reinforcement in LLM Reasoning", Table 1).

From one warmed-up tiny base model on the built-in arithmetic task (3-digit operands, a short
warm-up, so the base's pass@1 is far below its pass@256), train PSR, NSR, W-REINFORCE (lambda=0.1),
GRPO and PPO with matched budgets (same steps, prompts, samples per prompt, learning rate, seeds),
evaluate the base and every trained policy with n=256 samples per held-out problem, print pass@k
for k = 1..256 shaped like the paper's Table 1, draw the curves, and say for each of the paper's
three claims whether this run supports it (paired bootstrap over problems, 95%).

    .venv/bin/python benchmarks/negative_samples.py                 # 2-core CPU default
    .venv/bin/python benchmarks/negative_samples.py --scale gpu     # bigger budgets on a GPU cluster
    .venv/bin/python benchmarks/negative_samples.py --seeds 0 -- trainer.steps=20   # extra overrides

All roles start once; between methods the learners and the engine go back to the base weights.
Writes <out>/table.md, results.json, passk_counts.parquet, passk.png and one run dir per method.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

METHODS = {"PSR": "psr", "NSR": "nsr", "W-REINFORCE": "w_reinforce", "GRPO": "grpo", "PPO": "ppo"}
BASE_SEED = 0  # the base model (and its warm-up) is the same for every training seed
EVAL_SEED = 12345  # sampling seed of every evaluation, so all policies see the same draws' seeds
# Matched budgets. The task and warm-up are chosen so the base is weak at pass@1 but not at pass@256.
COMMON = ["task.max_digits=3", "model.pretrain_steps=500", "rollout.n=8", "rollout.max_new_tokens=8",
          "algorithm.optim.lr=1e-4", "eval.n=256", "eval.temperature=0.6", "eval.top_p=0.95", "eval.before_after_samples=0",
          "trainer.save_checkpoint=false", "logger.print_every=10"]
SCALES = {
    # About 35 minutes on a 2-core CPU machine (measured: see benchmarks/README.md).
    "cpu": {"seeds": [0, 1], "overrides": ["trainer.steps=40", "trainer.prompts_per_step=64", "task.num_eval=128"]},
    # A GPU cluster with vLLM (CUDA): more steps, prompts, problems and seeds; engines/learners on GPUs.
    "gpu": {"seeds": [0, 1, 2], "overrides": ["trainer.steps=200", "trainer.prompts_per_step=256", "task.num_eval=512",
                                              "cluster.rollout.gpus=1", "cluster.learner.gpus=1", "learner.world_size=2",
                                              "learner.micro_batch_size=256"]},
}


def compose_cfg(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from rlsys.config import register_configs, to_dataclass, validate
    from rlsys.train import CONF_DIR

    register_configs()
    with initialize_config_dir(CONF_DIR, version_base=None):
        return validate(to_dataclass(compose("config", overrides=overrides)))


def evaluate_policy(cfg, roles, held_out) -> dict:
    """Per-problem (n, c) of the policy the engines hold now."""
    from rlsys.eval.run import sample_counts

    return sample_counts(cfg, roles.fleet, roles.verifiers, held_out, seed=EVAL_SEED)


def run_experiment(out: Path, seeds: list[int], overrides: list[str], log=print) -> dict:
    """Base + every method x seed; returns per-problem counts {"Base": [c], method: [c per seed]}."""
    import ray

    from rlsys.loop.controller import prepare_data_and_model, run
    from rlsys.loop.roles import reset_roles, start_roles

    def cfg_for(algorithm: str, seed: int, run_dir: Path, extra=()):
        return compose_cfg([f"algorithm={algorithm}", f"trainer.seed={seed}", f"run_dir={run_dir}",
                            *COMMON, *overrides, *extra])

    prep = cfg_for("grpo", BASE_SEED, out / "base")
    train, held_out, base_path, tok = prepare_data_and_model(prep, log)
    log(f"base model {base_path}; {len(train)} train prompts, {len(held_out)} held-out problems")
    roles = start_roles(cfg_for("grpo", BASE_SEED, out / "base", [f"model.path={base_path}"]), base_path,
                        tok.pad_token_id or 0)
    counts, timings = {"Base": [evaluate_policy(prep, roles, held_out)]}, {}
    try:
        for seed in seeds:
            for label, preset in METHODS.items():
                t0 = time.perf_counter()
                cfg = cfg_for(preset, seed, out / f"seed{seed}" / preset, [f"model.path={base_path}"])
                reset_roles(cfg, roles)
                summary = run(cfg, roles, train, None, log=lambda *a: None)
                roles.learners.save(str(Path(cfg.run_dir) / "checkpoint"))  # for `rlsys eval` reruns
                counts.setdefault(label, []).append(evaluate_policy(cfg, roles, held_out))
                timings[f"{label}/seed{seed}"] = round(time.perf_counter() - t0, 1)
                log(f"seed {seed} {label:<12} {summary['steps']} steps + eval in {timings[f'{label}/seed{seed}']:.0f} s;"
                    f" pass@1 {pass_matrix(counts[label][-1], [1]).mean():.3f}")
    finally:
        ray.shutdown()
    return {"counts": counts, "timings": timings, "base_model": str(base_path), "eval_path": held_out.path}


def pass_matrix(counts: dict, ks: list[int]) -> np.ndarray:
    from rlsys.eval.passk import per_problem_pass_at_k

    return per_problem_pass_at_k(counts["n"], counts["c"], ks)


def verdicts(P: dict[str, np.ndarray], ks: list[int]) -> list[str]:
    """The paper's three claims, each judged with paired 95% bootstrap intervals over problems:
    "raises"/"below" = the interval of the difference excludes 0; "at or above"/"near best" = the
    interval of the difference reaches 0 or more (not significantly below)."""
    from rlsys.eval.passk import paired_bootstrap

    mean, K = {m: v.mean(0) for m, v in P.items()}, len(ks) - 1
    lo_hi = {m: paired_bootstrap(P[m], P["Base"]) for m in METHODS}  # [2, ks] each
    others = ["PSR", "NSR", "GRPO", "PPO"]
    rival = [max(others, key=lambda m: mean[m][i]) for i in range(len(ks))]  # best other method at each k
    w_ok = [bool(paired_bootstrap(P["W-REINFORCE"], P[r])[1][i] >= 0) for i, r in enumerate(rival)]
    psr = [bool(lo_hi["PSR"][0][0] > 0), bool(lo_hi["PSR"][1][K] < 0)]
    nsr = [bool(lo_hi["NSR"][0][0] > 0), bool((lo_hi["NSR"][1] >= 0).all())]
    decomposed = np.array([mean[m] for m in ("PSR", "NSR", "W-REINFORCE")])
    between = {m: bool(((mean[m] >= decomposed.min(0) - 1e-9) & (mean[m] <= decomposed.max(0) + 1e-9)).all())
               for m in ("GRPO", "PPO")}
    return [
        _verdict(all(psr), "1. PSR raises pass@1 but ends below the base at large k",
                 f"pass@1 {mean['Base'][0]:.3f} -> {mean['PSR'][0]:.3f} (significantly higher: {psr[0]}); "
                 f"pass@{ks[K]} {mean['Base'][K]:.3f} -> {mean['PSR'][K]:.3f} (significantly lower: {psr[1]})"),
        _verdict(all(nsr), "2. NSR raises pass@1 and stays at or above the base at every k",
                 f"pass@1 {mean['Base'][0]:.3f} -> {mean['NSR'][0]:.3f} (significantly higher: {nsr[0]}); "
                 f"never significantly below the base: {nsr[1]} (largest drop {np.max(mean['Base'] - mean['NSR']):+.3f})"),
        _verdict(all(w_ok), "3. W-REINFORCE is best or near best at every k",
                 "not significantly below the best other method at k = "
                 + ", ".join(f"{k}{'' if ok else ' NO (' + r + ')'}" for k, ok, r in zip(ks, w_ok, rival))
                 + f"; largest gap to the best {max(mean[r][i] - mean['W-REINFORCE'][i] for i, r in enumerate(rival)):+.3f}"),
        f"   (not a claim above, also in the paper: GRPO/PPO between the decomposed objectives at every k: {between})",
    ]


def _verdict(ok: bool, claim: str, evidence: str) -> str:
    return f"{'SUPPORTED    ' if ok else 'NOT SUPPORTED'} {claim}\n   {evidence}"


def table(P: dict[str, np.ndarray], ks: list[int], seeds: list[int]) -> str:
    head = "| method | " + " | ".join(f"pass@{k}" for k in ks) + " |"
    rows = [head, "|" + "---|" * (len(ks) + 1)]
    for m, v in P.items():
        rows.append(f"| {m} | " + " | ".join(f"{x * 100:.1f}" for x in v.mean(0)) + " |")
    return "\n".join(rows) + f"\n\n(percent; mean over {len(P['Base'])} held-out problems"\
        f"{'' if len(seeds) < 2 else f' and training seeds {seeds}'})"


def report(result: dict, seeds: list[int], out: Path, log=print) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rlsys.eval.passk import ks_up_to
    from rlsys.eval.run import plot

    counts = result["counts"]
    ks = ks_up_to(int(counts["Base"][0]["n"][0]))
    # Per-problem pass@k averaged over training seeds: the paired unit of the bootstrap is a problem.
    P = {m: np.mean([pass_matrix(c, ks) for c in cs], axis=0) for m, cs in counts.items()}
    text = table(P, ks, seeds)
    claims = verdicts(P, ks)
    log("\n" + text + "\n\n" + "\n".join(claims))
    (out / "table.md").write_text(text + "\n\n```\n" + "\n".join(claims) + "\n```\n")
    plot({m: {"overall": dict(zip(ks, v.mean(0)))} for m, v in P.items()}, ks, out / "passk.png")
    tables = [pa.table({"method": [m] * len(c["n"]), "seed": pa.array([s] * len(c["n"]), pa.int64()),  # base: null
                        **{k: c[k] for k in ("prompt_id", "n", "c")}})
              for m, cs in counts.items() for s, c in zip(seeds if m != "Base" else [None], cs)]
    pq.write_table(pa.concat_tables(tables), out / "passk_counts.parquet")
    (out / "results.json").write_text(json.dumps(
        {"pass_at_k": {m: dict(zip(map(str, ks), v.mean(0).round(5).tolist())) for m, v in P.items()},
         "claims": claims, "seeds": seeds, **{k: result[k] for k in ("timings", "base_model", "eval_path")}}, indent=2))
    log(f"\nwritten: {out}/table.md, results.json, passk_counts.parquet, passk.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=sorted(SCALES), default="cpu", help="budget preset (default: cpu)")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: the scale's)")
    p.add_argument("--out", default=None, help="output directory (default: runs/negative_samples-<time>)")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides after --, e.g. -- trainer.steps=20")
    args = p.parse_args()
    scale = SCALES[args.scale]
    seeds = args.seeds or scale["seeds"]
    out = Path(args.out or f"runs/negative_samples-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    overrides = scale["overrides"] + args.overrides
    print(f"negative-samples benchmark: scale={args.scale} seeds={seeds} overrides={COMMON + overrides}", flush=True)
    result = run_experiment(out, seeds, overrides)
    report(result, seeds, out)
    print(f"total wall time {(time.perf_counter() - t0) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    sys.exit(main())
