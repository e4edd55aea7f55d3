"""Importing environments: the built-in ones and the user's (rollout.agent.modules), in every process
that runs or names them (the driver, the engines, the tool processes)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path


def load_env_modules(modules: list[str]) -> None:
    """Import the user's environment modules (dotted names or .py paths); the built-ins always."""
    import rlsys.agents.calculator  # noqa: F401  (registers the built-in calculator)
    import rlsys.agents.python_tool  # noqa: F401  (and the Python tool, in the verifier's sandbox)

    for name in modules:
        if name.endswith(".py"):
            path = Path(name).expanduser()
            if not path.is_file():
                raise ValueError(f"config key 'rollout.agent.modules': {path} does not exist")
            spec = importlib.util.spec_from_file_location(f"rlsys_env_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            importlib.import_module(name)
