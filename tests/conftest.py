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
