"""The run's logger: every step's metrics to each backend of logger.backends, and every
logger.samples_every steps a table of sample completions."""

from __future__ import annotations

import sys

from rlsys.loggers import open_backends
from rlsys.loggers.table import COLUMNS, sample_rows


class RunLogger:
    def __init__(self, cfg, prompts: list[str]):
        self.backends = open_backends(cfg, cfg.run_dir)
        self.every, self.n, self.prompts = cfg.logger.samples_every, cfg.logger.samples_n, prompts

    def due(self, step: int) -> bool:
        """Whether `step` logs a sample table (logger.samples_every)."""
        return bool(self.every) and step % self.every == 0

    def log(self, m: dict, batch=None, rows: list | None = None) -> None:
        """One step's metrics (docs/metrics.md); with the step's batch (or its table rows, made where the
        batch is: rlsys/loggers/table.sample_rows), its sample table when due."""
        step = int(m["step"])
        for b in self.backends:
            b.log(m, step)
        if rows is None and batch is not None:
            rows = sample_rows(batch, self.prompts, self.n)
        if rows is not None and self.due(step):
            for b in self.backends:
                b.table("samples", COLUMNS, rows, step)

    def close(self) -> None:
        for b in self.backends:  # every backend gets closed, even if one fails
            try:
                b.close()
            except Exception as e:  # noqa: BLE001
                print(f"rlsys: closing logger {type(b).__name__} failed: {e}", file=sys.stderr)

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
