"""A quiet console: library warnings and actor logs go to <run>/rlsys.log unless logger.verbose=true.

The console keeps rlsys's own lines (data, model, progress bar, summary) and every ERROR record;
an exception that ends the run still prints in full. Where the rest goes:
  driver   the root logger (Ray's, transformers', Python warnings) -> <run>/rlsys.log; console: ERROR only
  actors   Ray's log_to_driver=False, and each worker process (and the vLLM processes it starts,
           which inherit its stdout/stderr) appends its stdout/stderr to the same file from start-up
           (a Ray worker_process_setup_hook). On another node the file is that node's <run>/rlsys.log
           (the same path: put trainer.output_dir on a shared volume to see them in one place).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

LOG_NAME = "rlsys.log"
ENV = "RLSYS_ACTOR_LOG"  # set for actors: the file their stdout/stderr goes to


def setup_console(cfg) -> Path | None:
    """Send the driver's library logs and warnings to <run>/rlsys.log (console: errors only).
    Returns the log path, or None with logger.verbose=true (nothing changes)."""
    if cfg.logger.verbose:
        return None
    path = Path(cfg.run_dir) / LOG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_console = logging.StreamHandler(sys.stderr)
    to_console.setLevel(logging.ERROR)
    root = logging.getLogger()
    for h in list(root.handlers):  # Hydra's console handler (and its train.log) make way for these two
        root.removeHandler(h)
    root.addHandler(to_file)
    root.addHandler(to_console)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # warnings.warn(...) -> the "py.warnings" logger -> the file
    _quiet_libraries()
    return path


def _quiet_libraries() -> None:
    """Libraries with their own console handlers: send their records through the root logger instead."""
    for name in ("ray", "transformers", "vllm", "torch", "hydra"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.propagate = True
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_default_handler()
        hf_logging.enable_propagation()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def ray_init_options(cfg, runtime_env: dict) -> dict:
    """ray.init keyword arguments for the console mode: actor logs stay off the driver's console
    and go to the run's log file (runtime_env gains the setup hook and the file's path)."""
    if cfg.logger.verbose:
        return {"log_to_driver": True}
    runtime_env.setdefault("env_vars", {})[ENV] = str(Path(cfg.run_dir).resolve() / LOG_NAME)
    runtime_env["worker_process_setup_hook"] = "rlsys.runtime.quiet_console.actor_log_hook"
    return {"log_to_driver": False, "configure_logging": False}


def actor_log_hook() -> None:
    """Runs in every Ray worker process at start-up: its stdout and stderr append to RLSYS_ACTOR_LOG."""
    path = os.environ.get(ENV)
    if not path:
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:  # an unwritable path: keep Ray's own per-worker log files
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
