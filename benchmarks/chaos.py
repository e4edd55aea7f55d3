"""Chaos: a run with an actor killed (SIGKILL) every few steps, next to the same run undisturbed.

    .venv/bin/python benchmarks/chaos.py [--steps 12] [--every 2] [--seed 0] [--out benchmarks/results/chaos]
    .venv/bin/python benchmarks/chaos.py --checkpoint-io tiny smollm2_135m   # save/load time against size
    .venv/bin/python benchmarks/chaos.py --hangs [--kinds engine verifier reference learner]  # stopped, not killed

Chaos: both runs are the embedded default with a reference (algorithm.kl.coef) and 2 learner
ranks, checkpointing every --every steps. Once step s (a multiple of --every) is logged, one victim
is killed a random moment later, so the kill lands inside step s + 1: an engine, a verifier, the
reference server, a learner rank, the rollout manager, or the controller itself (then the same command is rerun in the
same run directory with trainer.resume=auto, as a job scheduler would). Every kind is killed once
per six kills, in a seeded order. Reports the kills, whether the run finished every step, the
restarts and lost samples the run counted (faults/* metrics), and whether its metrics and
rollouts equal the undisturbed run's bitwise (scripts/compare_runs.py; the fault counts aside).

--hangs: the victims (--kinds, in turn) are stopped (SIGSTOP: alive but stuck) rather than killed;
each hang's detection time is the time from the stop to the line its role's deadline check writes in
the run's log (rlsys/runtime/deadlines.py, rlsys/rollout/fleet.py).

--checkpoint-io: one learner rank (no Ray) of each model after one optimizer step (so AdamW's
moments exist): the seconds to save and load its resumable checkpoint (rlsys/learner/sharded_state.py)
and its size, next to a plain copy of the same files (shutil.copytree) timed in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
KINDS = {"engine": b"ray::RolloutWorker", "verifier": b"ray::VerifierWorker", "reference": b"ray::ReferenceServer",
         "learner": b"ray::LearnerWorker", "manager": b"ray::RolloutManager", "controller": None}


def args_for(steps: int, every: int) -> list[str]:
    return [f"trainer.steps={steps}", f"trainer.save_every={every}", "trainer.keep_last=2", "eval.before_after_samples=0",
            "trainer.save_checkpoint=false", "trainer.max_restarts=100", "algorithm.kl.coef=0.01",
            "learner.world_size=2", "cluster.address=local"]


def steps_logged(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(ln)["step"] for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []


def processes(root_pid: int, title: bytes) -> list[int]:
    """root_pid's descendants whose title (Ray names actor processes ray::<Class>) starts with `title`."""
    parent, titles = {}, {}
    for d in os.listdir("/proc"):
        try:
            parent[int(d)] = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            titles[int(d)] = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")[0]
        except (ValueError, OSError):
            continue

    def under(pid: int) -> bool:
        while pid > 1:
            pid = parent.get(pid, 0)
            if pid == root_pid:
                return True
        return False

    return sorted(p for p, t in titles.items() if t.startswith(title) and under(p))


def launch(cmd: list[str], log) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)


def kill_controller(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2)
    try:  # its Ray processes and engines (they die with it on a real node)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


HUNG = {"engine": "sent nothing for", "verifier": "[rlsys] verifier actor ", "reference": "[rlsys] reference actor ",
        "learner": "[rlsys] learner rank(s) "}  # the line each role's deadline check writes when it finds a hang


def found_hangs(logs: list[Path], kills: list[dict]) -> None:
    """A new hang line of a kind: the oldest stop of that kind not yet found was found now. logs: the console's
    and the run's actor log (the rollout manager writes its lines there at once; the console gets them with
    the step), so a line counts where it came first."""
    texts = [p.read_text(errors="replace") if p.is_file() else "" for p in logs]
    for kind, line in HUNG.items():
        mine = [k for k in kills if k["kind"] == kind]
        new = max(t.count(line) for t in texts) - sum("detected_after_s" in k for k in mine)
        for k in [k for k in mine if "stopped_at" in k][:max(0, new)]:
            k["detected_after_s"] = round(time.monotonic() - k.pop("stopped_at"), 1)


def chaos_run(cmd: list[str], run_dir: Path, steps: int, every: int, seed: int, hangs: list[str] | None = None) -> dict:
    """hangs: the kinds to stop (SIGSTOP) in turn; None: kill every kind (SIGKILL)."""
    rng, kills, order = random.Random(seed), [], []
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir.parent / f"{run_dir.name}.log"
    log = open(log_path, "w")
    proc, t0, done = launch(cmd, log), time.monotonic(), set()
    while proc.poll() is None or (proc.returncode != 0 and kills and kills[-1]["kind"] == "controller"):
        if proc.poll() is not None:  # the controller was killed: rerun the same command, resuming
            proc = launch([*cmd, "trainer.resume=auto"], log)
        if hangs:
            found_hangs([log_path, run_dir / "rlsys.log"], kills)
        logged = steps_logged(run_dir)
        due = [s for s in logged if s % every == 0 and s < steps and s not in done]
        if not due:
            time.sleep(0.2)
            continue
        step = due[0]
        done.add(step)
        if not order:
            order = list(reversed(hangs)) if hangs else rng.sample(list(KINDS), len(KINDS))
        kind = order.pop()
        time.sleep(rng.uniform(0.0, 1.5))  # into step + 1
        if kind == "controller":
            kill_controller(proc)
            kills.append({"after_step": step, "kind": kind, "pid": proc.pid})
            continue
        pids = processes(proc.pid, KINDS[kind])
        if not pids:
            kills.append({"after_step": step, "kind": kind, "pid": None, "note": "no such process"})
            continue
        pid = rng.choice(pids)
        try:
            os.kill(pid, signal.SIGSTOP if hangs else signal.SIGKILL)
        except ProcessLookupError:
            pid = None
        kills.append({"after_step": step, "kind": kind, "pid": pid, "signal": "SIGSTOP" if hangs else "SIGKILL",
                      **({"stopped_at": time.monotonic()} if hangs and pid else {})})
    proc.wait()
    for k in kills:  # a stop never found before the run ended
        if k.pop("stopped_at", None) is not None:
            k["detected_after_s"] = None
    log.close()
    return {"returncode": proc.returncode, "kills": kills, "seconds": round(time.monotonic() - t0, 1)}


def fault_totals(run_dir: Path) -> dict:
    totals: dict[str, int] = {}
    for ln in (run_dir / "metrics.jsonl").read_text().splitlines():
        for k, v in json.loads(ln).items():
            if k.startswith("faults/") or k == "training/off_policy/dropped_samples":
                totals[k] = totals.get(k, 0) + v
            elif k == "rollout/engine_restarts":  # a running count (of one controller's life)
                totals[k] = max(totals.get(k, 0), v)
    return totals


def chaos(a) -> dict:
    from compare_runs import compare

    out = Path(a.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    base = [sys.executable, "-m", "rlsys.train", *args_for(a.steps, a.every), *a.overrides]
    quiet, t0 = out / "quiet", time.monotonic()
    print("$", " ".join(base), f"hydra.run.dir={quiet}", flush=True)
    subprocess.run([*base, f"hydra.run.dir={quiet}"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    quiet_s = time.monotonic() - t0
    noisy = out / "chaos"
    result = chaos_run([*base, f"hydra.run.dir={noisy}"], noisy, a.steps, a.every, a.seed, a.kinds if a.hangs else None)
    logged = steps_logged(noisy)
    diffs = [d for d in compare(quiet, noisy) if "faults/" not in d and "engine_restarts" not in d]  # counts of the kills
    n = next(int(x.split("=")[1]) for x in [*base, "rollout.n=8"] if x.startswith("rollout.n="))
    faults = fault_totals(noisy)
    lost_groups = sum(v for k, v in faults.items() if k.startswith("faults/groups_lost"))
    return {**result, "undisturbed_seconds": round(quiet_s, 1), "finished_every_step": logged == list(range(1, a.steps + 1)),
            "faults": faults, "samples_lost": lost_groups * n + faults.get("training/off_policy/dropped_samples", 0),
            "equal_to_undisturbed": not diffs, "differences": diffs[:10]}


def checkpoint_io(model: str, port: int) -> dict:
    """Save and load one rank's checkpoint of `model` (a conf/model preset), next to a plain copy."""
    from hydra import compose, initialize_config_dir

    from learner_throughput import synthetic
    from rlsys.config import register_configs, to_dataclass
    from rlsys.learner.sharded_state import load_rank, save_rank
    from rlsys.learner.losses import Denominators
    from rlsys.learner.role_config import learner_role_config
    from rlsys.learner.worker import LearnerWorker
    from rlsys.loop.prepare import prepare_data_and_model

    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = to_dataclass(compose("config", overrides=[f"model={model}", f"run_dir={tempfile.mkdtemp()}"]))
    path = prepare_data_and_model(cfg, print)[2]
    w = LearnerWorker(learner_role_config(cfg), path, 0, 1)
    w.setup("127.0.0.1", port)
    batch = synthetic(8, w.model.config.vocab_size)
    w.train_step(batch, Denominators(tokens=float(batch.response_lengths.sum()), sequences=8.0, max_len=96.0), 1)
    root = Path(tempfile.mkdtemp(dir=ROOT / "benchmarks" / "results"))
    try:
        t = time.perf_counter()
        save_rank(w, str(root / "ckpt"))
        save_s = time.perf_counter() - t
        t = time.perf_counter()
        load_rank(w, str(root / "ckpt"))
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        shutil.copytree(root / "ckpt", root / "copy")
        copy_s = time.perf_counter() - t
        size = sum(f.stat().st_size for f in (root / "ckpt").rglob("*") if f.is_file())
    finally:
        shutil.rmtree(root, ignore_errors=True)
        w.shutdown()
    gb = size / 1e9
    return {"model": model, "params_M": round(sum(p.numel() for p in w.model.parameters()) / 1e6, 1),
            "size_GB": round(gb, 3), "save_s": round(save_s, 2), "load_s": round(load_s, 2),
            "copy_s": round(copy_s, 2), "save_GBps": round(gb / save_s, 2), "load_GBps": round(gb / load_s, 2),
            "save_vs_copy": round(save_s / copy_s, 2), "load_vs_copy": round(load_s / copy_s, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--every", type=int, default=2, help="kill after every N-th step (also the checkpoint interval)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "chaos"))
    p.add_argument("--hangs", action="store_true", help="stop (SIGSTOP) actors instead of killing processes")
    p.add_argument("--kinds", nargs="+", default=["engine", "verifier", "reference", "learner"],
                   choices=[k for k in KINDS if k not in ("controller", "manager")],  # the manager's calls have no deadline
                   help="with --hangs: the roles stopped, in turn")
    p.add_argument("--checkpoint-io", nargs="*", metavar="MODEL", help="time checkpoint save/load for these models instead")
    p.add_argument("overrides", nargs="*", help="more Hydra overrides for both runs")
    a = p.parse_args()
    if a.checkpoint_io:
        from rlsys.runtime.net import free_address

        (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
        rows = [checkpoint_io(m, free_address()[1]) for m in a.checkpoint_io]
        print(json.dumps(rows, indent=2))
        return
    result = chaos(a)
    print(json.dumps(result, indent=2))
    Path(a.out, "results.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
