"""`jsonl`: metrics.jsonl (one JSON object per step) and samples.jsonl (one object per table row)."""

from __future__ import annotations

import json
from pathlib import Path


class JsonlBackend:
    def __init__(self, cfg, run_dir: Path):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics, self.samples = run_dir / "metrics.jsonl", run_dir / "samples.jsonl"

    def log(self, metrics: dict, step: int) -> None:
        with self.metrics.open("a") as f:  # appended and closed every step: a crash loses nothing logged
            f.write(json.dumps(metrics) + "\n")

    def table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        with self.samples.open("a") as f:
            for row in rows:
                f.write(json.dumps({"step": step, "table": name, **dict(zip(columns, row))}) + "\n")

    def close(self) -> None:
        pass
