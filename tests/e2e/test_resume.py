"""Exact resume: kill -9 the controller after step 3 (checkpoint at step 2), rerun the same command
in the same run directory with trainer.resume=auto, and the run's metrics and rollouts equal an
uninterrupted run's bitwise, with no step missing or duplicated."""

import json
import os
import signal
import subprocess
import time

import pytest

from rlsys.checkpoint import complete_checkpoints
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e
ARGS = ["trainer.steps=4", "trainer.save_every=2", "trainer.keep_last=1", "trainer.eval_n=0",
        "trainer.prompts_per_step=16", "rollout.n=4", "trainer.save_checkpoint=false", "learner.world_size=2",
        "algorithm.lr_warmup_steps=2", "algorithm.lr_schedule=cosine"]


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


@pytest.fixture(scope="module")
def runs(tmp_path_factory, rlsys_cmd):
    root = tmp_path_factory.mktemp("resume")
    whole, killed = root / "whole", root / "killed"
    train(rlsys_cmd, whole)
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
