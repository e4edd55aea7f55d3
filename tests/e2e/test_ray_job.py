"""The documented `ray job submit` path against a local head started with `ray start --head`."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    dash = free_port()
    subprocess.run(["ray", "start", "--head", "--num-cpus=2", f"--port={free_port()}",
                    f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--disable-usage-stats"],
                   env=env, check=True, capture_output=True, timeout=180)
    try:
        yield {**env, "RAY_ADDRESS": f"http://127.0.0.1:{dash}"}
    finally:
        subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_submitted_job_trains_and_writes_checkpoint(head, tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.run(["bash", "deploy/ray/submit.sh", "trainer.steps=2", "trainer.eval_n=0",
                           "rollout.n=4", f"trainer.output_dir={out}"],
                          cwd=ROOT, env=head, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "succeeded" in log, log[-6000:]
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    assert (run_dir / "checkpoint" / "model.safetensors").exists()
    assert (run_dir / "checkpoint" / "config.json").exists()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
