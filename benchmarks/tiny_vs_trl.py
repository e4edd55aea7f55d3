"""Where the time of one RL step goes: rlsys's embedded default and TRL's GRPOTrainer on the same tiny
model, task and batch, stage by stage, side by side, in one run.

    .venv/bin/python benchmarks/tiny_vs_trl.py [--steps 10] [--out benchmarks/results/tiny_vs_trl]
        [--skip-rlsys] [--skip-trl] [--skip-bare] [-- HYDRA_OVERRIDES ...]

rlsys runs `rlsys train trainer.steps=N eval.before_after_samples=0 trainer.save_checkpoint=false
trainer.output_dir=OUT/rlsys cluster.address=local logger.print_every=1` (+ overrides): the embedded default
(tiny model, built-in arithmetic task, 64 prompts x 8 samples, <= 8 new tokens, lr 1e-4) with no held-out
evaluation or final checkpoint, in a Ray of its own (never a test run's), one console line per step.
TRL (this file under .venv-trl, --trl-worker; benchmarks/setup_trl.sh installs it) then gets the workload
from that run's config.json, base model (summary.json) and data/train.parquet: the same model directory,
the same prompts as plain text in rlsys's order (PromptDataset.batches), P prompts x G samples per step,
max_completion_length = rollout.max_new_tokens, the same lr, temperature, top_p (top_k off), clip, loss
aggregation, grad clip and seed, beta = 0 (no reference), fp32 on CPU, gradient checkpointing as
learner.activation_checkpointing (off; TRL's default is on), and rlsys's verifier for the row's data_source
(arithmetic: exact match of the last integer) called in-process as the reward function. Both sides use
every core of the machine; run it on a quiet one.

Figures: per stage, the median over steps 2..N of that stage's seconds in a step (step 1 pays warm-up);
the medians of the stages need not add up to the median step.
- s/step: wall seconds from one step's end to the next, everything between included. rlsys: between the
  arrivals of its console progress lines (logger.print_every=1; printed after the step's metrics are
  logged), so steps 2..N only. TRL: from one on_step_end to the next (step 1: from on_train_begin).
- step time: rlsys: timing_s/step (rl_step: batch to weight sync); "between steps" is s/step minus it
  (metric and rollout logging, the next step's start). TRL: = s/step.
- generation: rlsys: timing_s/gen (time during which the engines generated; verification streams during
  it). TRL: GRPOTrainer._generate (prompt tokenization + HF generate, no_grad).
- reward: rlsys: timing_s/reward (time during which the verifier pool scored; overlaps generation). TRL:
  GRPOTrainer._calculate_rewards (the reward function, in-process).
- log-probs: rlsys: timing_s/ref (reference log-probs; 0 with kl.coef = 0). TRL: the
  _get_per_token_logps_and_entropies passes inside _generate_and_score_completions (old-policy or
  reference log-probs; none with beta = 0 and one update per generation). Neither side recomputes
  old log-probs here: with one update per step the training forward's own values serve.
- train: forward + backward + optimizer. rlsys: timing_s/update_actor (advantages in the rollout manager,
  then the learner ranks' forward, backward and optimizer step). TRL: compute_loss (forward + loss),
  backward (the rest of training_step after _prepare_inputs and compute_loss) and optimizer (grad clip,
  optimizer and scheduler step, zero_grad: the end of training_step to on_step_end), each also shown alone.
- weight sync: rlsys: timing_s/update_weights (learner -> engines). TRL: none (generation uses the
  trained model in the same process).
- other: step time minus the stages above (per step, then the median). rlsys: timing_s/step -
  timing_s/stage_sum, negative when stages overlapped. TRL: batch bookkeeping in
  _generate_and_score_completions (padding, advantages, metric gathering; also shown alone), the
  shuffle/split in _prepare_inputs, logging and the dataloader between steps.
- response length / reward: mean response tokens and mean reward of the step's samples (generation
  time follows the length: the tiny model stops at EOS).
- process wall: launch to exit of each side's process (start-up, model build or load, Ray included).
- load average: the machine's 1-min load average at each side's launch and exit: a side that shares the
  machine with another job measures that job too.
bare engine: the generation floor, measured in the same run: rlsys's own engine (RolloutWorker with the run's
engine arguments; a lone CPU engine runs its model in the engine-core process) called in one process, no Ray,
fleet, rollout manager or verifier, with all of a step's groups at once on the run's prompts in its order, at the
initial weights (`generation` is that call's wall time; --skip-bare leaves it out).
Writes OUT/results.json (per-step figures of every side, settings) and OUT/table.md; logs OUT/rlsys.log,
OUT/trl.log, OUT/bare.log. results.json gets the rlsys side as soon as it is done; --skip-rlsys / --skip-trl reuse a
side from it.
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
PROGRESS = re.compile(r"^\[[#-]+\] (\d+)/\d+ ")  # rlsys's console progress line (rlsys/loggers/console.py)
LOSS_TYPES = {"seq_mean_token_mean": "grpo", "token_mean": "dapo", "seq_mean_token_sum_norm": "dr_grpo"}  # loss_agg

# table rows: (key in a step's record, label); a side without the key shows "-"
ROWS = [("period_s", "**s/step**: wall from one step's end to the next"),
        ("step_s", "step time (rlsys: timing_s/step)"),
        ("between_steps", "&nbsp;&nbsp;rlsys: between steps, outside timing_s/step"),
        ("gen", "generation"), ("reward", "reward"), ("logprobs", "log-probs (reference / old policy)"),
        ("train", "train (forward + backward + optimizer)"), ("train_forward", "&nbsp;&nbsp;forward + loss"),
        ("train_backward", "&nbsp;&nbsp;backward"), ("train_optimizer", "&nbsp;&nbsp;grad clip + optimizer step"),
        ("sync", "weight sync"), ("other", "other (step time - the stages above)"),
        ("score_bookkeeping", "&nbsp;&nbsp;TRL: scoring bookkeeping"), ("stage_sum", "sum of the stages above")]
INFO = [("response_length", "response length (tokens, mean)", ".2f"), ("reward_mean", "reward (mean)", ".3f")]


def run_rlsys(args, out: Path) -> dict:
    cmd = [str(ROOT / ".venv/bin/rlsys"), "train", f"trainer.steps={args.steps}", "eval.before_after_samples=0",
           "trainer.save_checkpoint=false", f"trainer.output_dir={out / 'rlsys'}", "cluster.address=local",
           "logger.print_every=1", *args.overrides]
    print("$", " ".join(cmd), flush=True)
    launch, run_dir, ends, load0 = time.time(), None, {}, os.getloadavg()[0]
    with open(out / "rlsys.log", "w") as log:  # unbuffered: each line arrives when printed, its arrival is a stamp
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            m = PROGRESS.match(line)
            if m:
                ends[int(m.group(1))] = time.perf_counter()
            if line.startswith("run directory: "):
                run_dir = Path(line[len("run directory: "):].split("  (")[0].strip())
    wall = time.time() - launch
    if proc.wait() != 0 or run_dir is None:
        sys.exit(f"rlsys train failed (exit {proc.returncode}); see {out / 'rlsys.log'}")
    cfg = json.loads((run_dir / "config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    steps = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():  # metric names: docs/metrics.md
        if not line.strip():
            continue
        r = json.loads(line)
        s = {"step": r["step"], "step_s": r["timing_s/step"], "gen": r["timing_s/gen"], "reward": r["timing_s/reward"],
             "logprobs": r["timing_s/ref"], "train": r["timing_s/update_actor"], "sync": r["timing_s/update_weights"],
             "stage_sum": r["timing_s/stage_sum"], "other": r["timing_s/step"] - r["timing_s/stage_sum"],
             "response_length": r["response_length/mean"], "reward_mean": r["critic/score/mean"],
             "learner_cores": r.get("learner_cores")}
        if s["step"] - 1 in ends and s["step"] in ends:  # a step's console line is printed once its metrics are logged
            s["period_s"] = ends[s["step"]] - ends[s["step"] - 1]
            s["between_steps"] = s["period_s"] - s["step_s"]
        steps.append(s)
    task = cfg["task"]
    return {"steps": steps, "process_wall_s": wall, "loadavg": [load0, os.getloadavg()[0]], "run_dir": str(run_dir),
            "model_dir": summary["base_model"],
            "train_path": str(ROOT / (task["train_path"] or run_dir / "data" / "train.parquet")), "config": cfg}


def run_bare(args, rl: dict, out: Path) -> dict:
    """The generation floor: rlsys's engine (RolloutWorker, the run's engine arguments) in one process, no
    Ray, fleet, rollout manager or verifier, on the run's prompts in its order (the initial weights)."""
    conf, result = out / "bare_config.json", out / "bare_result.json"
    conf.write_text(json.dumps({"overrides": args.overrides, "steps": args.steps, "result_path": str(result),
                                "run_dir": str(out / "bare_run")}))
    r, launch, load0 = run_worker(ROOT / ".venv/bin/python", "--bare-worker", conf, result, out / "bare.log")
    return {**r, "process_wall_s": time.time() - launch, "loadavg": [load0, os.getloadavg()[0]]}


def run_worker(python: Path, flag: str, conf: Path, result: Path, log_path: Path) -> tuple[dict, float, float]:
    """This file as a worker (`flag CONF`) under `python`, its output in log_path: the result it wrote,
    its launch time (time.time()) and the load average then."""
    cmd = [str(python), str(Path(__file__).resolve()), flag, str(conf)]
    print("$", " ".join(cmd), flush=True)
    result.unlink(missing_ok=True)
    launch, load0 = time.time(), os.getloadavg()[0]
    with open(log_path, "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0 or not result.exists():
        sys.exit(f"{flag} failed (exit {rc}); see {log_path}")
    return json.loads(result.read_text()), launch, load0


def bare_worker(conf_path: str) -> None:
    import asyncio

    from hydra import compose, initialize_config_dir

    from rlsys.config import register_configs, to_dataclass
    from rlsys.loop.prepare import prepare_data_and_model
    from rlsys.rollout.worker import RolloutWorker, engine_spec

    w = json.loads(Path(conf_path).read_text())
    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = to_dataclass(compose("config", overrides=[*w["overrides"], f"run_dir={w['run_dir']}"]))
    train, _, model_path, _ = prepare_data_and_model(cfg, print)
    r, t = cfg.rollout, cfg.trainer
    engine, loop, order, steps = RolloutWorker(engine_spec(cfg, model_path)), asyncio.new_event_loop(), \
        train.batches(t.prompts_per_step, t.seed), []
    for step in range(1, w["steps"] + 1):
        idx = next(order)
        t0 = time.perf_counter()
        outs = loop.run_until_complete(engine.generate([train.prompt_token_ids[i] for i in idx],
                                                       [t.seed + 1000 * step + k for k in range(len(idx))],
                                                       r.n, r.temperature, r.top_p, r.max_new_tokens))
        gen = time.perf_counter() - t0
        steps.append({"step": step, "gen": gen, "step_s": gen, "period_s": gen,
                      "response_length": statistics.fmean(len(x) for x in outs.response_token_ids)})
    loop.run_until_complete(engine.shutdown())
    Path(w["result_path"]).write_text(json.dumps({"steps": steps}, indent=2))


def run_trl(rl: dict, steps: int, out: Path) -> dict:
    python = ROOT / ".venv-trl/bin/python"
    if not python.exists():
        subprocess.run(["bash", str(ROOT / "benchmarks/setup_trl.sh")], check=True)
    conf, result = out / "trl_config.json", out / "trl_result.json"
    conf.write_text(json.dumps({k: rl[k] for k in ("config", "model_dir", "train_path")}
                               | {"steps": steps, "output_dir": str(out / "trl_out"), "result_path": str(result)},
                               indent=2))
    r, launch, load0 = run_worker(python, "--trl-worker", conf, result, out / "trl.log")
    return {**r, "process_wall_s": time.time() - launch, "startup_s": r["train_begin_wall"] - launch,
            "loadavg": [load0, os.getloadavg()[0]]}


def trl_worker(conf_path: str) -> None:
    """Under .venv-trl: GRPOTrainer on rlsys's workload with its stages timed; writes w['result_path']."""
    w = json.loads(Path(conf_path).read_text())
    c, steps = w["config"], w["steps"]  # the rlsys run's composed config
    sys.path.insert(0, str(ROOT))  # rlsys's verifier and prompt order, not its dependencies
    import pyarrow.parquet as pq
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer, __version__ as trl_version

    from rlsys.config import VerifierConfig
    from rlsys.data.dataset import PromptDataset
    from rlsys.verify import VERIFIERS, configure

    configure(VerifierConfig(**c["verifier"]))
    P, G, seed = c["trainer"]["prompts_per_step"], c["rollout"]["n"], c["trainer"]["seed"]

    from learning_curve import trl_reward  # this file's directory is on sys.path when run as a script

    reward = trl_reward(VERIFIERS)

    # rlsys draws each step's prompts with PromptDataset.batches(P, trainer.seed): lay the rows out in that
    # order, and TRL (shuffle_dataset=False) takes P consecutive rows per step, each G times
    rows = pq.read_table(w["train_path"]).to_pylist()
    if not all(isinstance(r["prompt"], str) for r in rows):
        sys.exit("the tiny model has no chat template: this benchmark takes plain-text prompts only")
    order = PromptDataset(w["train_path"], rows, [], [], []).batches(P, seed)
    ds = Dataset.from_list([{"prompt": r["prompt"], "ground_truth": str(r["ground_truth"]), "data_source":
                             r["data_source"]} for r in (rows[i] for _ in range(steps) for i in next(order))])

    clock = time.perf_counter
    acc: dict[str, float] = {}  # seconds of each timed method in the current step
    inside = {"score": False}

    def timed(key: str, fn, only_in_score: bool | None = None):
        def wrapper(*a, **k):
            if only_in_score is not None and inside["score"] != only_in_score:
                return fn(*a, **k)
            t = clock()
            try:
                return fn(*a, **k)
            finally:
                acc[key] = acc.get(key, 0.0) + clock() - t
        return wrapper

    class Stages(TrainerCallback):
        """Per step: the wall time between step ends and the timed methods' seconds, split into stages."""

        def __init__(self):
            self.steps, self.logs, self.last, self.train_begin_wall = [], {}, 0.0, 0.0

        def on_train_begin(self, args, state, control, **_):
            self.train_begin_wall, self.last = time.time(), clock()

        def on_step_end(self, args, state, control, **_):
            now = clock()
            g = lambda k: acc.get(k, 0.0)  # noqa: E731
            opt = now - g("training_step_end")
            backward = g("training_step") - g("prepare_inputs") - g("compute_loss")
            s = {"step": state.global_step, "step_s": now - self.last, "period_s": now - self.last, "gen": g("gen"),
                 "reward": g("reward"), "logprobs": g("logprobs"), "train": g("compute_loss") + backward + opt,
                 "train_forward": g("compute_loss"), "train_backward": backward, "train_optimizer": opt,
                 "score_bookkeeping": g("score") - g("gen") - g("reward") - g("logprobs")}
            s["stage_sum"] = s["gen"] + s["reward"] + s["logprobs"] + s["train"]
            s["other"] = s["step_s"] - s["stage_sum"]
            self.steps.append(s)
            self.last = now
            acc.clear()

        def on_log(self, args, state, control, logs=None, **_):
            if logs and "reward" in logs:
                self.logs[state.global_step] = {"response_length": logs.get("completions/mean_length"),
                                                "reward_mean": logs.get("reward"),
                                                "trl_step_time": logs.get("step_time")}

    a, o = c["algorithm"], c["algorithm"]["optim"]
    settings = dict(per_device_train_batch_size=P * G, gradient_accumulation_steps=1, num_generations=G,
                    max_completion_length=c["rollout"]["max_new_tokens"], temperature=c["rollout"]["temperature"],
                    top_p=c["rollout"]["top_p"], top_k=0, learning_rate=o["lr"], warmup_steps=o["warmup_steps"],
                    lr_scheduler_type="constant_with_warmup" if o["schedule"] == "constant" else o["schedule"],
                    weight_decay=o["weight_decay"], max_grad_norm=o["grad_clip"], beta=a["kl"]["coef"],
                    epsilon=a["clip_low"], epsilon_high=a["clip_high"], loss_type=LOSS_TYPES.get(a["loss_agg"], "dapo"),
                    scale_rewards="group" if a["norm_std"] else "none", max_steps=steps, seed=seed,
                    shuffle_dataset=False, use_cpu=True, bf16=False,  # fp32 on CPU, as rlsys's default
                    gradient_checkpointing=c["learner"]["activation_checkpointing"])  # TRL's default: on
    stages = Stages()
    trainer = GRPOTrainer(model=w["model_dir"], reward_funcs=reward, train_dataset=ds, callbacks=[stages],
                          args=GRPOConfig(output_dir=w["output_dir"], logging_steps=1, save_strategy="no",
                                          report_to="none", disable_tqdm=True, **settings))
    # instance attributes shadow the class's methods: every self.<name>(...) inside the trainer goes through these
    score_fn = trainer._generate_and_score_completions

    def scoring(*args, **kwargs):
        inside["score"] = True
        try:
            return score_fn(*args, **kwargs)
        finally:
            inside["score"] = False

    step_fn = trainer.training_step

    def training_step(*args, **kwargs):
        try:
            return step_fn(*args, **kwargs)
        finally:
            acc["training_step_end"] = clock()

    trainer._generate_and_score_completions = timed("score", scoring)
    trainer._generate = timed("gen", trainer._generate)
    trainer._calculate_rewards = timed("reward", trainer._calculate_rewards)
    trainer._get_per_token_logps_and_entropies = timed("logprobs", trainer._get_per_token_logps_and_entropies, True)
    trainer._prepare_inputs = timed("prepare_inputs", trainer._prepare_inputs)
    trainer.compute_loss = timed("compute_loss", trainer.compute_loss)
    trainer.training_step = timed("training_step", training_step)
    trainer.train()
    for s in stages.steps:
        s.update(stages.logs.get(s["step"], {}))
    res = {"steps": stages.steps, "train_begin_wall": stages.train_begin_wall, "torch_threads": torch.get_num_threads(),
           "trl": {"version": trl_version, "torch": torch.__version__, **settings}}
    Path(w["result_path"]).write_text(json.dumps(res, indent=2))
    print(json.dumps(res), flush=True)


def medians(side: dict) -> dict:
    """Per key, the median over steps 2..N (all steps if there is only one)."""
    steps = side["steps"][1:] or side["steps"]
    keys = {k for s in steps for k, v in s.items() if isinstance(v, (int, float)) and k != "step"}
    return {k: statistics.median(s[k] for s in steps if s.get(k) is not None) for k in sorted(keys)
            if any(s.get(k) is not None for s in steps)}


def report(rl: dict | None, tr: dict | None, bare: dict | None = None) -> tuple[dict, str]:
    sides = {name: side for name, side in (("rlsys", rl), ("TRL", tr), ("bare engine", bare)) if side}
    med = {name: medians(side) for name, side in sides.items()}
    n = {name: len(side["steps"]) for name, side in sides.items()}
    fmt = lambda m, k, spec=".3f": format(m[k], spec) if k in m else "-"  # noqa: E731
    head = " | ".join(f"{name} (steps 2..{n[name]})" for name in sides)
    both = "rlsys" in sides and "TRL" in sides  # then a ratio column
    lines = [f"| median s per step | {head} |" + (" TRL / rlsys |" if both else ""),
             "|---|" + "---:|" * (len(sides) + both)]
    for key, label in ROWS:
        cells = [fmt(med[name], key) for name in sides]
        if key == "sync" and "TRL" in sides:
            cells[list(sides).index("TRL")] = "none (one process)"
        ratio = ""
        if both:
            a, b = med["rlsys"].get(key), med["TRL"].get(key)
            ratio = f" {b / a:.2f} |" if a and b is not None and a > 1e-4 and key not in ("other",) else " |"
        lines.append(f"| {label} | " + " | ".join(cells) + " |" + ratio)
    for key, label, spec in INFO:
        lines.append(f"| {label} | " + " | ".join(fmt(med[name], key, spec) for name in sides) + " |"
                     + (" |" if both else ""))
    lines.append("| process wall (s, start-up included) | "
                 + " | ".join(f"{side['process_wall_s']:.1f}" for side in sides.values()) + " |"
                 + (" |" if both else ""))
    cfg = (rl or {}).get("config")
    if cfg:
        t, r = cfg["trainer"], cfg["rollout"]
        lines += ["", f"- workload: {t['prompts_per_step']} prompts x {r['n']} samples per step, <= "
                  f"{r['max_new_tokens']} new tokens, T={r['temperature']}, top_p={r['top_p']}, "
                  f"lr {cfg['algorithm']['optim']['lr']}, seed {t['seed']}; model {rl['model_dir']}"]
    if rl:
        c = rl["config"]
        lines.append(f"- rlsys: {c['learner']['world_size']} learner ranks, {c['rollout']['num_engines']} engine(s); "
                     f"learner cores busy while training (median): {fmt(med['rlsys'], 'learner_cores', '.2f')}")
    if tr:
        lines.append(f"- TRL {tr['trl']['version']} (torch {tr['trl']['torch']}, {tr['torch_threads']} threads), "
                     f"start-up to on_train_begin {tr['startup_s']:.1f} s; TRL's own step_time (training_step) median "
                     f"{fmt(med['TRL'], 'trl_step_time')} s")
    lines.append("- medians are per row: they need not add up; 'other' is taken per step, then the median")
    loads = [f"{name} {side['loadavg'][0]:.2f} -> {side['loadavg'][1]:.2f}" for name, side in sides.items()
             if side.get("loadavg")]
    lines.append(f"- machine: {os.cpu_count()} cores; 1-min load average at launch -> exit: {', '.join(loads) or '-'}")
    return med, "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=10, help="RL steps per side (medians over steps 2..N)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/tiny_vs_trl"))
    p.add_argument("--skip-rlsys", action="store_true", help="reuse the rlsys side of OUT/results.json")
    p.add_argument("--skip-trl", action="store_true", help="reuse the TRL side of OUT/results.json")
    p.add_argument("--skip-bare", action="store_true", help="no bare-engine side (or reuse it from OUT/results.json)")
    p.add_argument("--trl-worker", metavar="CONFIG_JSON", help="internal: the TRL side (run under .venv-trl)")
    p.add_argument("--bare-worker", metavar="CONFIG_JSON", help="internal: the bare-engine side")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for rlsys, after -- (not with --skip-rlsys)")
    args = p.parse_args()
    if args.trl_worker:
        return trl_worker(args.trl_worker)
    if args.bare_worker:
        return bare_worker(args.bare_worker)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    if args.skip_rlsys and args.overrides:
        p.error("Hydra overrides go to the rlsys run: not with --skip-rlsys")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    prev = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    for flag, key in ((args.skip_rlsys, "rlsys"), (args.skip_trl, "trl")):
        if flag and not prev.get(key):
            sys.exit(f"--skip-{key}: no {key} results in {out / 'results.json'}")
    rl = prev["rlsys"] if args.skip_rlsys else run_rlsys(args, out)
    (out / "results.json").write_text(json.dumps({**prev, "rlsys": rl}, indent=2))  # kept if TRL fails
    tr = prev["trl"] if args.skip_trl else run_trl(rl, args.steps, out)
    bare = prev.get("bare") if args.skip_bare else run_bare(args, rl, out)
    med, table = report(rl, tr, bare)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps({"rlsys": rl, "trl": tr, "bare": bare, "medians": med,
                                                  "table": table}, indent=2))
    print(table)
    print(f"\n{out}: table.md, results.json, rlsys.log, trl.log, bare.log")


if __name__ == "__main__":
    main()
