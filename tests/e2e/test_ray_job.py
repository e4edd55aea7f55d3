"""The documented `ray job submit` path against a local head started with `ray start --head`."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head(tmp_path):
    """A head of our own (`ray start --head --block`), on free ports, stopped by its pid: other Ray
    clusters on a shared machine are neither disturbed (no `ray stop`) nor in the way (the agent's
    default port 52365 may be taken by one)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    dash, gcs = free_port(), free_port()
    proc = subprocess.Popen(["ray", "start", "--head", "--block", "--num-cpus=2", f"--port={gcs}",
                             f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--disable-usage-stats",
                             f"--dashboard-agent-listen-port={free_port()}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{dash}/api/version", timeout=180)
        yield {**env, "RAY_ADDRESS": f"http://127.0.0.1:{dash}"}
    finally:
        proc.terminate()  # --block: the ray start process stops the head's processes it started
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        forget_head(gcs)


def forget_head(gcs_port: int) -> None:
    """`ray start --head` records its address for later `ray.init()` calls to join; `ray stop` would
    delete the record, a stopped --block head does not: delete it if it is still ours."""
    record = Path("/tmp/ray/ray_current_cluster")
    try:
        if record.read_text().strip().endswith(f":{gcs_port}"):
            record.unlink()
    except FileNotFoundError:
        pass


def wait_for_http(url: str, timeout: float) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except urllib.error.HTTPError:  # it answers (401: the head's token auth): it is up
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def test_submitted_job_trains_and_writes_checkpoint(head, tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.run(["bash", "deploy/ray/submit.sh", "trainer.steps=2", "eval.before_after_samples=0",
                           "rollout.n=4", f"trainer.output_dir={out}"],
                          cwd=ROOT, env=head, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "succeeded" in log, log[-6000:]
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    assert (run_dir / "checkpoint" / "model.safetensors").exists()
    assert (run_dir / "checkpoint" / "config.json").exists()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
