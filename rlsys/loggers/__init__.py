"""Logger backends (`logger.backends`): console, jsonl, tensorboard, wandb, mlflow, or your own.

A backend is a class with `log(metrics, step)`, `table(name, columns, rows, step)` and `close()`,
built as `Backend(cfg, run_dir)`. The built-in ones import their library only when selected, so a
run that does not use wandb never needs it installed. Add one with `@register_backend("name")`
in a module listed in `logger.modules`.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Callable

# name -> "module:Class" of the built-in backends, or the class itself once registered
BACKENDS: dict[str, str | Callable] = {
    "console": "rlsys.loggers.console:ConsoleBackend",
    "jsonl": "rlsys.loggers.jsonl:JsonlBackend",
    "tensorboard": "rlsys.loggers.tensorboard_backend:TensorBoardBackend",
    "wandb": "rlsys.loggers.wandb_backend:WandbBackend",
    "mlflow": "rlsys.loggers.mlflow_backend:MlflowBackend",
}
# backend -> the package it needs (checked at start, so a missing one fails before Ray starts)
REQUIRES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def register_backend(name: str):
    """Decorator: make a logger backend class selectable as logger.backends=[..., name]."""
    def wrap(cls):
        BACKENDS[name] = cls
        return cls
    return wrap


def load_modules(modules: list[str]) -> None:
    for m in modules:
        importlib.import_module(m)


def missing_package(name: str) -> str | None:
    """The package a built-in backend needs when it is not installed, else None."""
    pkg = REQUIRES.get(name)
    return pkg if pkg and importlib.util.find_spec(pkg) is None else None


def backend_class(name: str) -> Callable:
    entry = BACKENDS[name]
    if isinstance(entry, str):
        module, cls = entry.split(":")
        entry = BACKENDS[name] = getattr(importlib.import_module(module), cls)
    return entry


def open_backends(cfg, run_dir: str | Path) -> list:
    load_modules(cfg.logger.modules)
    return [backend_class(name)(cfg, Path(run_dir)) for name in cfg.logger.backends]
