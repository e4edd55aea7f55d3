"""Exact resume: kill -9 the controller after step 3 (checkpoint at step 2), rerun the same command
in the same run directory with trainer.resume=auto, and the run's metrics and rollouts equal an
uninterrupted run's bitwise, with no step missing or duplicated. The same for a learner rank, and
for the rollout manager, killed during step 4: the run rebuilds what it lost and goes on from the
step-2 checkpoint by itself. Ctrl-C
ends a run within a bounded time, releasing every process, and says where resume goes on."""

import json
import os
import signal
import subprocess
import time

import pytest

from rlsys.loop.checkpoint import complete_checkpoints, damage, latest_intact
from tests.conftest import ROOT

ARGS = ["trainer.steps=4", "trainer.save_every=2", "trainer.keep_last=1", "eval.before_after_samples=0",
        "trainer.prompts_per_step=16", "rollout.n=4", "trainer.save_checkpoint=false", "learner.world_size=2",
        "algorithm.optim.warmup_steps=2", "algorithm.optim.schedule=cosine"]


def steps_logged(run_dir) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(ln)["step"] for ln in path.read_text().splitlines() if ln.strip()]


def train(rlsys_cmd, run_dir, *extra, timeout=900):
    proc = subprocess.run([*rlsys_cmd, "train", *ARGS, f"hydra.run.dir={run_dir}", *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def actor_pids(root_pid: int, title: bytes = b"ray::LearnerWorker") -> list[int]:
    """The processes of one actor class (Ray sets their title) among root_pid's descendants."""
    parent = {}
    for d in os.listdir("/proc"):
        try:
            stat = open(f"/proc/{d}/stat").read()
            parent[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError):
            continue

    def under(pid):
        while pid > 1:
            pid = parent.get(pid, 0)
            if pid == root_pid:
                return True
        return False

    found = []
    for pid in parent:
        try:
            name = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0]
        except OSError:
            continue
        if name.startswith(title) and under(pid):
            found.append(pid)
    return sorted(found)


@pytest.fixture(scope="module")
def whole(tmp_path_factory, rlsys_cmd):
    run_dir = tmp_path_factory.mktemp("resume") / "whole"
    train(rlsys_cmd, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def runs(whole, tmp_path_factory, rlsys_cmd):
    killed = tmp_path_factory.mktemp("resume") / "killed"
    proc = subprocess.Popen([*rlsys_cmd, "train", *ARGS, f"hydra.run.dir={killed}"], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while 3 not in steps_logged(killed):  # step 3 is logged after the step-2 checkpoint was committed
        assert proc.poll() is None and time.monotonic() < deadline, "the run to be killed ended early"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # the controller, mid-run
    proc.wait()
    time.sleep(2)
    try:  # its Ray processes and engines (they would die with it on a real node)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    interrupted = steps_logged(killed)
    out = train(rlsys_cmd, killed, "trainer.resume=auto")
    return whole, killed, interrupted, out


def test_resume_continues_with_no_step_missing_or_duplicated(runs):
    whole, killed, interrupted, out = runs
    assert interrupted[:3] == [1, 2, 3]
    assert "resumed from" in out and "step 2 done" in out
    assert steps_logged(killed) == [1, 2, 3, 4]
    assert [p.name for p in complete_checkpoints(killed)] == ["step_000004"]  # keep_last=1


def test_resumed_run_equals_the_uninterrupted_run_bitwise(runs):
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from compare_runs import compare

    whole, killed, _, _ = runs
    diffs = compare(whole, killed)
    assert not diffs, diffs
    rows = [json.loads(ln) for ln in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["training/policy_version"] for r in rows] == [1, 2, 3, 4]
    lrs = [r["actor/lr"] for r in rows]  # warm-up 2 steps then cosine: the schedule state was restored
    assert lrs[2] > lrs[3] > 0 and lrs[0] < lrs[1] < lrs[2]


def killed_during_step_4(rlsys_cmd, run_dir, title: bytes, expected: int):
    """The run with one process of an actor class (the last of `expected`) killed (SIGKILL) once step 3
    was logged (checkpoint at step 2)."""
    proc = subprocess.Popen([*rlsys_cmd, "train", *ARGS, f"hydra.run.dir={run_dir}", "trainer.max_restarts=1"],
                            cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 900
    while 3 not in steps_logged(run_dir):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before step 3"
        time.sleep(0.2)
    pids = actor_pids(proc.pid, title)
    assert len(pids) == expected, pids
    os.kill(pids[-1], signal.SIGKILL)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-5000:]
    return run_dir, out, pids


@pytest.fixture(scope="module")
def learner_killed(whole, tmp_path_factory, rlsys_cmd):
    """Rank 1 of the run's 2 learners killed during step 4."""
    return killed_during_step_4(rlsys_cmd, tmp_path_factory.mktemp("resume") / "learner_killed",
                                b"ray::LearnerWorker", 2)


def test_a_killed_learner_rank_is_rebuilt_from_the_last_checkpoint_and_the_run_is_unchanged(whole, learner_killed):
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from compare_runs import compare

    run_dir, out, pids = learner_killed
    assert "learner rank" in out and "died" in out and "restart 1 of trainer.max_restarts=1" in out
    assert "step_000002" in out  # went on from the step-2 checkpoint
    assert steps_logged(run_dir) == [1, 2, 3, 4]
    assert not set(pids) & set(actor_pids(os.getpid()))  # (the run's processes are gone)
    # bitwise the uninterrupted run; the one difference: the redone step 3 reports the restart
    assert compare(whole, run_dir) == ["step 3: faults/learner_restarts None != 1"]


def test_a_killed_rollout_manager_is_replaced_and_the_run_goes_on_from_the_last_checkpoint_unchanged(
        whole, tmp_path_factory, rlsys_cmd):
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from compare_runs import compare

    run_dir, out, _ = killed_during_step_4(rlsys_cmd, tmp_path_factory.mktemp("resume") / "manager_killed",
                                           b"ray::RolloutManager", 1)
    assert "the rollout manager died" in out and "rebuilding the rollout manager (restart 1" in out
    assert "step_000002" in out  # went on from the step-2 checkpoint
    assert steps_logged(run_dir) == [1, 2, 3, 4]
    assert compare(whole, run_dir) == ["step 3: faults/rollout_restarts None != 1"]


CTRL_C_ARGS = ["trainer.steps=4", "trainer.save_every=1", "eval.before_after_samples=0",  # small and quick
               "trainer.save_checkpoint=false", "trainer.prompts_per_step=8", "rollout.n=4", "learner.world_size=1"]


def run_processes(session: int, run_dir) -> list[str]:
    """The live processes of a run: those of its session (Ray, the actors, vLLM's), and those that carry its
    actor log in their environment (the verifiers' scorers start sessions of their own)."""
    mark = f"RLSYS_ACTOR_LOG={run_dir.resolve() / 'rlsys.log'}".encode()
    found = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            state, _, _, sid = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[:4]
            env = open(f"/proc/{d}/environ", "rb").read().split(b"\0")
            cmd = open(f"/proc/{d}/cmdline", "rb").read().replace(b"\0", b" ")[:120]
        except (OSError, ValueError):
            continue
        if state != "Z" and (int(sid) == session or mark in env):
            found.append(f"{d}: {cmd.decode(errors='replace')}")
    return found


def as_in_a_terminal():
    """A foreground command's SIGINT: its default, even when pytest was started by a shell's `&` (which
    starts it, and so the run, with SIGINT ignored: measured, the run then ignored the Ctrl-C and finished)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_releases_the_run_and_leaves_the_checkpoint_resume_goes_on_from(tmp_path, rlsys_cmd):
    """Ctrl-C (SIGINT to the run's process group, as a terminal sends it) once step 2 is logged (step 1's
    checkpoint committed): the process ends within 60 s with status 130, summary.json says interrupted,
    nothing of the run is left running, and the checkpoint resume=auto goes on from is intact."""
    run_dir = tmp_path / "ctrl_c"
    cmd = [*rlsys_cmd, "train", *CTRL_C_ARGS, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=as_in_a_terminal)
    try:
        deadline = time.monotonic() + 600
        while 2 not in steps_logged(run_dir):
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before step 2"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        t0 = time.monotonic()
        out, _ = proc.communicate(timeout=60)
        print(f"exited {time.monotonic() - t0:.1f} s after SIGINT")
        gone_by = time.monotonic() + 10  # killed processes take a moment to go
        while run_processes(proc.pid, run_dir) and time.monotonic() < gone_by:
            time.sleep(0.2)
        assert not run_processes(proc.pid, run_dir)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 130, out[-5000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 2 <= summary["step"] < 4, summary
    assert f"interrupted after step {summary['step']}" in out
    # what trainer.resume=auto goes on from (the resume itself, after a kill -9: the tests above): the last
    # intact checkpoint, the summary's, of the last finished step or the one before (Ctrl-C mid-save)
    latest = latest_intact(complete_checkpoints(run_dir), print)
    assert latest is not None and str(latest) == summary["last_checkpoint"] and not damage(latest)
    assert latest.name in (f"step_{summary['step']:06d}", f"step_{summary['step'] - 1:06d}")
