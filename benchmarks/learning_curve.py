"""Held-out pass@1 against training wall time: rlsys and TRL's GRPOTrainer on one workload, back to back.

    .venv/bin/python benchmarks/learning_curve.py [--steps N] [--eval-every 5] [--eval-n 4]
        [--out benchmarks/results/learning_curve] [--skip-rlsys] [--skip-trl] [-- HYDRA_OVERRIDES ...]

rlsys runs `rlsys train model=smollm2_135m eval.every=K eval.n=E eval.before_after_samples=E ...` (+ overrides; no
--steps: the preset's trainer.steps). TRL (this file under .venv-trl, --trl-worker) gets the workload from
that run's config.json (composed config, overrides included), base model and data/*.parquet: same prompts
in rlsys's order, P prompts x G samples per step, lengths, lr, temperature, clip, seed, and rlsys's verifier
with the same format_score as reward. --skip-rlsys / --skip-trl reuse that side from OUT/results.json.
- pass@1: fraction of the held-out samples (E per prompt) with reward >= 1 - 1e-6.
- training wall time at step s: rlsys: sum of timing_s/step over steps 1..s; TRL: on_train_begin to step s's
  on_step_end, minus the held-out evals in between. Held-out evals never count as training.
- start-up: launch to the start of step 1, minus the step-0 eval. TRL: launch to on_train_begin (the step-0
  eval runs after it). rlsys: launch to its "held-out before RL" line (step 1 starts right after), minus
  that evaluation's own time (summary.json held_out_before.seconds).
- time-to-accuracy: target = TRL's last pass@1; per system, the training time where pass@1 first reaches it,
  interpolated linearly between the eval point before and the first at/above it (0 if step 0 already is;
  "not reached" if none is). ratio = rlsys / TRL.
Writes OUT/learning_curve.png, table.md, results.json; logs OUT/rlsys.log, trl.log. results.json gets the
rlsys side as soon as it is done; a TRL worker that fails or is stopped (kill it: TRL on 2 cores is slow)
leaves a partial curve: its eval points and TRL's logged step_time per step, marked "partial".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIFT = 0.10  # the held-out pass@1 gain over a side's own step 0 whose time is compared
LOSS_TYPES = {"seq_mean_token_mean": "grpo", "token_mean": "dapo", "seq_mean_token_sum_norm": "dr_grpo"}  # loss_agg
EVAL_BATCH = 16  # held-out prompts per HF generate call (x E samples each)


def point(step, train_seconds, pass1, reward_mean, eval_seconds=None) -> dict:
    return {"step": step, "train_seconds": train_seconds, "pass1": pass1, "reward_mean": reward_mean,
            "eval_seconds": eval_seconds}


def run_rlsys(args, out: Path) -> dict:
    cmd = [str(ROOT / ".venv/bin/rlsys"), "train", "model=smollm2_135m", f"eval.every={args.eval_every}",
           f"eval.n={args.eval_n}", f"eval.before_after_samples={args.eval_n}", f"trainer.output_dir={out / 'rlsys'}",
           "trainer.save_checkpoint=false", *([f"trainer.steps={args.steps}"] if args.steps else []), *args.overrides]
    print("$", " ".join(cmd), flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # each line arrives when printed: arrival times are stamps
    launch, before_at, run_dir = time.time(), None, None
    with open(out / "rlsys.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            if line.startswith("held-out before RL") and before_at is None:
                before_at = time.time()
            if line.startswith("run directory: "):
                run_dir = Path(line[len("run directory: "):].split("  (")[0].strip())
    total = time.time() - launch
    if proc.wait() != 0 or run_dir is None or before_at is None:
        sys.exit(f"rlsys train failed (exit {proc.returncode}); see {out / 'rlsys.log'}")
    cfg = json.loads((run_dir / "config.json").read_text())
    s = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    steps, (b, a) = cfg["trainer"]["steps"], (s["held_out_before"], s["held_out_after"])
    points, cum, step_s, evals = [point(0, 0.0, b["accuracy"], b["reward_mean"])], 0.0, [], []
    for r in rows:  # metric names: docs/metrics.md
        step_s.append(r["timing_s/step"])
        cum += r["timing_s/step"]
        if "val/pass@1" in r:  # eval.every logs pass@k only, no reward mean
            evals.append(r["timing_s/testing"])
            if r["step"] < steps:  # the last step's policy is held_out_after (same samples, with reward)
                points.append(point(r["step"], cum, r["val/pass@1"], None, r["timing_s/testing"]))
    points.append(point(steps, cum, a["accuracy"], a["reward_mean"]))
    step0_eval = b["seconds"]  # the held-out evaluation before step 1, timed by the controller
    task = cfg["task"]
    return {"points": points, "step_seconds": step_s, "median_step_s": statistics.median(step_s),
            "startup_s": before_at - launch - step0_eval, "launch_to_first_step_s": before_at - launch,
            "step0_eval_s": step0_eval, "total_wall_s": total, "run_dir": str(run_dir),
            "model_dir": s["base_model"], "eval_prompts": b["samples"] // b["n"], "config": cfg,
            "train_path": str(ROOT / (task["train_path"] or run_dir / "data" / "train.parquet")),
            "eval_path": str(ROOT / (task["eval_path"] or run_dir / "data" / "eval.parquet"))}


def run_trl(rl: dict, out: Path) -> dict:
    python = ROOT / ".venv-trl/bin/python"
    if not python.exists():
        subprocess.run(["bash", str(ROOT / "benchmarks/setup_trl.sh")], check=True)
    conf, result = out / "trl_config.json", out / "trl_result.json"
    conf.write_text(json.dumps({k: rl[k] for k in ("config", "model_dir", "train_path", "eval_path")}
                               | {"output_dir": str(out / "trl_out"), "result_path": str(result)}, indent=2))
    cmd = [str(python), str(Path(__file__).resolve()), "--trl-worker", str(conf)]
    print("$", " ".join(cmd), flush=True)
    launch = time.time()
    with open(out / "trl.log", "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:  # stopped or failed: keep the curve it printed so far (one JSON line per eval point)
        print(f"TRL worker exited {rc}; its curve so far is taken from {out / 'trl.log'}", flush=True)
        return trl_partial(out / "trl.log", launch)
    r = json.loads(result.read_text())
    return {"points": r["points"], "step_seconds": r["step_seconds"],
            "median_step_s": statistics.median(r["step_seconds"]), "startup_s": r["ready_wall"] - launch,
            "total_wall_s": time.time() - launch, "trl": r["trl"]}


def trl_partial(log: Path, launch: float) -> dict:
    """The TRL side of a worker that did not finish: its eval points and TRL's own per-step
    `step_time` log entries (start-up unknown)."""
    text = log.read_text()
    points = [json.loads(m) for m in re.findall(r'\{"step": [^}]*\}', text)]  # tqdm's \r lines share the line
    steps = [float(x) for x in re.findall(r"'step_time': '([0-9.]+)'", text)]
    if not points or not steps:
        sys.exit(f"TRL worker left no eval point or step in {log}")
    return {"points": points, "step_seconds": steps, "median_step_s": statistics.median(steps), "startup_s": None,
            "total_wall_s": time.time() - launch, "partial": True, "steps_done": len(steps)}


def trl_reward(verifiers: dict):
    """TRL's reward function: rlsys's verifier of each row's data_source, called in-process (also used by
    benchmarks/tiny_vs_trl.py)."""
    def score(text: str, truth: str, source: str) -> float:
        try:
            return float(verifiers[source](text, truth)[0])
        except Exception:  # noqa: BLE001  (rlsys's scorer processes also score a verifier error 0)
            return 0.0

    def reward(completions, ground_truth, data_source, **_):
        texts = [(x[-1].get("content") or "") if isinstance(x, list) else x for x in completions]
        return [score(t, gt, s) for t, gt, s in zip(texts, ground_truth, data_source)]

    return reward


def trl_worker(conf_path: str) -> None:
    """Under .venv-trl: GRPOTrainer with a held-out eval callback; writes the result to w['result_path']."""
    w = json.loads(Path(conf_path).read_text())
    c = w["config"]  # the rlsys run's composed config
    sys.path.insert(0, str(ROOT))  # rlsys's verifier and prompt order, not its dependencies
    import pyarrow.parquet as pq
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer, __version__ as trl_version

    from rlsys.config import VerifierConfig
    from rlsys.data.batch import SUCCESS
    from rlsys.data.dataset import PromptDataset
    from rlsys.verify import VERIFIERS, configure

    configure(VerifierConfig(**c["verifier"]))  # format_score: both systems optimize the same reward
    P, G, steps, seed = c["trainer"]["prompts_per_step"], c["rollout"]["n"], c["trainer"]["steps"], c["trainer"]["seed"]
    ev, n, new_tokens = c["eval"], c["eval"]["n"], c["rollout"]["max_new_tokens"]

    reward = trl_reward(VERIFIERS)

    # rlsys draws each step's prompts with PromptDataset.batches(P, trainer.seed): lay the rows out in that
    # order, and TRL (shuffle_dataset=False) takes P consecutive rows per step
    rows = pq.read_table(w["train_path"]).to_pylist()
    order = PromptDataset(w["train_path"], rows, [], [], []).batches(P, seed)
    ds = Dataset.from_list([{"prompt": r["prompt"], "ground_truth": str(r["ground_truth"]), "data_source":
                             r["data_source"]} for r in (rows[i] for _ in range(steps) for i in next(order))])

    tok = AutoTokenizer.from_pretrained(w["model_dir"])
    tok.padding_side = "left"  # generate continues every row from its last prompt token
    held = pq.read_table(w["eval_path"]).to_pylist()
    texts = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
             if isinstance(r["prompt"], list) else r["prompt"] for r in held]  # as rlsys renders prompts

    def evaluate(model) -> dict:
        was_training, rng = model.training, torch.get_rng_state()
        model.eval()
        torch.manual_seed(seed)  # the same sampling seed at every eval (as rlsys's); training's RNG restored below
        rewards = []
        with torch.no_grad():
            for i in range(0, len(held), EVAL_BATCH):
                enc = tok(texts[i:i + EVAL_BATCH], return_tensors="pt", padding=True, add_special_tokens=False)
                out = model.generate(**enc, do_sample=True, temperature=ev["temperature"], top_p=ev["top_p"], top_k=0,
                                     max_new_tokens=new_tokens, num_return_sequences=n, pad_token_id=tok.pad_token_id)
                done = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                rewards += [reward([t], [str(held[i + j // n]["ground_truth"])], [held[i + j // n]["data_source"]])[0]
                            for j, t in enumerate(done)]  # a prompt's n samples are adjacent
        torch.set_rng_state(rng)
        model.train(was_training)
        return {"pass1": sum(r >= SUCCESS for r in rewards) / len(rewards), "reward_mean": statistics.fmean(rewards)}

    class Curve(TrainerCallback):
        """Held-out eval at step 0, every eval.every steps and at the last; eval time leaves the training clock."""

        def __init__(self):
            self.points, self.step_seconds, self.ready_wall, self.t0, self.evals, self.last = [], [], 0.0, 0.0, 0.0, 0.0

        def on_train_begin(self, args, state, control, model=None, **_):
            self.ready_wall, self.t0 = time.time(), time.perf_counter()
            self.measure(0, 0.0, model)

        def on_step_end(self, args, state, control, model=None, **_):
            train_s = time.perf_counter() - self.t0 - self.evals
            self.step_seconds.append(train_s - self.last)
            self.last = train_s
            if state.global_step % (ev["every"] or steps) == 0 or state.global_step == state.max_steps:
                self.measure(state.global_step, train_s, model)

        def measure(self, step, train_s, model):
            t = time.perf_counter()
            e = evaluate(model)
            seconds = time.perf_counter() - t
            self.evals += seconds
            self.points.append(point(step, train_s, e["pass1"], e["reward_mean"], seconds))
            print(json.dumps(self.points[-1]), flush=True)

    a, o = c["algorithm"], c["algorithm"]["optim"]
    settings = dict(per_device_train_batch_size=P * G, gradient_accumulation_steps=1, num_generations=G,
                    max_completion_length=new_tokens, temperature=c["rollout"]["temperature"],
                    top_p=c["rollout"]["top_p"], learning_rate=o["lr"], warmup_steps=o["warmup_steps"],
                    lr_scheduler_type="constant_with_warmup" if o["schedule"] == "constant" else o["schedule"],
                    weight_decay=o["weight_decay"], max_grad_norm=o["grad_clip"], beta=a["kl"]["coef"],
                    epsilon=a["clip_low"], epsilon_high=a["clip_high"], loss_type=LOSS_TYPES.get(a["loss_agg"], "dapo"),
                    scale_rewards="group" if a["norm_std"] else "none", max_steps=steps, seed=seed,
                    shuffle_dataset=False, use_cpu=True, bf16=False,  # fp32 on CPU
                    gradient_checkpointing=c["learner"]["activation_checkpointing"])  # TRL's default: on
    curve = Curve()
    trainer = GRPOTrainer(model=w["model_dir"], reward_funcs=reward, train_dataset=ds, callbacks=[curve],
                          args=GRPOConfig(output_dir=w["output_dir"], logging_steps=1, save_strategy="no",
                                          report_to="none", **settings))
    trainer.train()
    res = {"points": curve.points, "step_seconds": curve.step_seconds, "ready_wall": curve.ready_wall,
           "trl": {"version": trl_version, **settings}}
    Path(w["result_path"]).write_text(json.dumps(res, indent=2))
    print(json.dumps(res), flush=True)


def time_to(points: list[dict], target: float) -> float | None:
    """Training seconds at which pass@1 first reaches target, linearly interpolated between the eval point
    before and the first at/above it; 0 if step 0 already is, None if no point is."""
    for i, p in enumerate(points):
        if p["pass1"] >= target:
            if i == 0:
                return 0.0
            q = points[i - 1]  # below the target, so p["pass1"] > q["pass1"]
            return q["train_seconds"] + (target - q["pass1"]) / (p["pass1"] - q["pass1"]) * (
                p["train_seconds"] - q["train_seconds"])
    return None


def plot(sides: dict, target: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, side in sides.items():
        ax.plot([p["train_seconds"] for p in side["points"]], [p["pass1"] for p in side["points"]], marker="o",
                label=f"{name} (median {side['median_step_s']:.1f} s/step)")
    if target is not None:
        ax.axhline(target, ls="--", color="gray", label=f"target: TRL's final pass@1 {target:.3f}")
    ax.set(xlabel="training wall time, s (start-up and held-out evals excluded)", ylabel="held-out pass@1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fmt(x, spec=".1f", none="not reached") -> str:
    return none if x is None else format(x, spec)


def report(rl: dict, tr: dict | None) -> tuple[dict, str]:
    """The summary (time-to-accuracy, ratio) and the markdown table."""
    sides = {"rlsys": rl, **({"TRL": tr} if tr else {})}
    lines = ["| system | step | train s | pass@1 | reward |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {q['step']} | {q['train_seconds']:.1f} | {q['pass1']:.3f} | "
              f"{fmt(q['reward_mean'], '.3f', '-')} |" for name, side in sides.items() for q in side["points"]]
    c, t, e = rl["config"], rl["config"]["trainer"], rl["config"]["eval"]
    lines += ["", f"- workload: {t['steps']} steps x {t['prompts_per_step']} prompts x {c['rollout']['n']} samples, "
              f"<= {c['rollout']['max_new_tokens']} new tokens, lr {c['algorithm']['optim']['lr']}, seed {t['seed']}; "
              f"held-out: {rl['eval_prompts']} prompts x {e['n']} samples, T={e['temperature']}, top_p={e['top_p']}"]
    summary = {}
    if tr:
        target = tr["points"][-1]["pass1"]
        rs, ts = time_to(rl["points"], target), time_to(tr["points"], target)
        summary = {"target_pass1": target, "rlsys_time_to_target_s": rs, "trl_time_to_target_s": ts,
                   "ratio_rlsys_over_trl": rs / ts if rs is not None and ts else None}
        lines += [f"- target: TRL's pass@1 at its last step ({tr['points'][-1]['step']}): {target:.3f}",
                  f"- time to target (training s, interpolated between eval points): rlsys {fmt(rs)}, TRL {fmt(ts)};"
                  f" rlsys / TRL = {fmt(summary['ratio_rlsys_over_trl'], '.2f', 'n/a')}"]
        if target <= min(side["points"][0]["pass1"] for side in sides.values()):
            lines.append("- TRL ended at or below both starting points, so time-to-target is 0 for both; the lift "
                         "below compares instead")
        # a fixed lift over each side's own step-0 pass@1: meaningful also when one side does not improve
        lift = {name: time_to(side["points"], side["points"][0]["pass1"] + LIFT) for name, side in sides.items()}
        summary.update({f"{name.lower()}_time_to_lift_s": v for name, v in lift.items()}, lift=LIFT)
        trl_total = tr["points"][-1]["train_seconds"]
        bound = (f"rlsys / TRL < {lift['rlsys'] / trl_total:.2f} (TRL not there after {trl_total:.0f} s)"
                 if lift["TRL"] is None and lift["rlsys"] is not None else
                 f"rlsys / TRL = {fmt(lift['rlsys'] / lift['TRL'] if lift['rlsys'] is not None and lift['TRL'] else None, '.2f', 'n/a')}")
        lines.append(f"- time to +{LIFT:.2f} pass@1 over its own step 0 (training s): rlsys {fmt(lift['rlsys'])}, "
                     f"TRL {fmt(lift['TRL'])}; {bound}")
    lines += [f"- {name}: start-up {fmt(side['startup_s'], '.1f', 'unknown')} s, median step "
              f"{side['median_step_s']:.2f} s, process wall {side['total_wall_s']:.1f} s"
              + (f" (stopped after step {side['steps_done']})" if side.get("partial") else "")
              for name, side in sides.items()]
    lines.append(f"- start-up excludes the step-0 eval (rlsys: {rl['step0_eval_s']:.1f} s); rlsys logs no reward at "
                 f"intermediate eval points ('-')")
    return summary, "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, help="RL steps (default: the preset's trainer.steps)")
    p.add_argument("--eval-every", type=int, default=5, help="held-out eval every K steps")
    p.add_argument("--eval-n", type=int, default=4, help="samples per held-out prompt")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/learning_curve"))
    p.add_argument("--skip-rlsys", action="store_true", help="reuse the rlsys side of OUT/results.json")
    p.add_argument("--skip-trl", action="store_true", help="reuse the TRL side of OUT/results.json")
    p.add_argument("--trl-worker", metavar="CONFIG_JSON", help="internal: the TRL side (run under .venv-trl)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for rlsys, after -- (not with --skip-rlsys)")
    args = p.parse_args()
    if args.trl_worker:
        return trl_worker(args.trl_worker)
    if args.eval_every < 1 or args.eval_n < 1:
        p.error("--eval-every and --eval-n must be >= 1")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    prev = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    if args.skip_rlsys and not prev.get("rlsys"):
        sys.exit(f"--skip-rlsys: no rlsys results in {out / 'results.json'}")
    rl = prev["rlsys"] if args.skip_rlsys else run_rlsys(args, out)
    (out / "results.json").write_text(json.dumps({**prev, "rlsys": rl}, indent=2))  # kept if TRL fails
    tr = prev.get("trl") if args.skip_trl else run_trl(rl, out)
    summary, table = report(rl, tr)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps({"rlsys": rl, "trl": tr, "summary": summary}, indent=2))
    plot({"rlsys": rl, **({"TRL": tr} if tr else {})}, summary.get("target_pass1"), out / "learning_curve.png")
    print(table)
    print(f"\n{out}: learning_curve.png, table.md, results.json")


if __name__ == "__main__":
    main()
