import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def rlsys_cmd():
    """The console script of the environment running the tests."""
    exe = Path(sys.executable).parent / "rlsys"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "rlsys.cli"]


def run_cli(cmd: list[str], out: Path, timeout: int) -> tuple[Path, str]:
    """Run an `rlsys` command that writes one run directory under `out`; must succeed."""
    import subprocess

    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir, proc.stdout


LANES = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items):
    """A test carries its lane's marker from its directory, so `-m unit` / `-m integration` / `-m e2e`
    select a lane wherever the tests are named from."""
    for item in items:
        lane = item.path.relative_to(ROOT / "tests").parts[0]
        if lane in LANES:
            item.add_marker(lane)


_exit_status: list[int] = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the process with pytest's own status once it has reported, skipping interpreter teardown.
    Why: the libraries the tests load in this process (Ray's core worker, vLLM, wandb) can crash while
    Python finalizes them after every test has passed (CI, 2026-12-06: exit 139 right after
    "443 passed"), and that crash would replace the suite's result."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if _exit_status:
        os._exit(_exit_status[0])
