"""`tensorboard`: event files under <run>/tensorboard (scalars; tables as markdown text)."""

from __future__ import annotations

from pathlib import Path

from rlsys.loggers.table import markdown


class TensorBoardBackend:
    def __init__(self, cfg, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, metrics: dict, step: int) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        self.writer.add_text(name, markdown(columns, rows), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
