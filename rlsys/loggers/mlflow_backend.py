"""`mlflow`: a local file store under <run>/mlruns by default (logger.mlflow_uri for a server).
Metric names keep verl's slashes; characters MLflow refuses ('@') become '_at_'. Tables are JSON
artifacts in MLflow's table layout ({"columns": [...], "data": [[...], ...]})."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from rlsys.config import as_dict


def mlflow_key(key: str) -> str:
    return re.sub(r"[^/\w.\- :]", "_", key.replace("@", "_at_"))


def flat(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": str(v)[:6000]})
    return out


class MlflowBackend:
    def __init__(self, cfg, run_dir: Path):
        uri = cfg.logger.mlflow_uri or (run_dir / "mlruns").resolve().as_uri()
        if uri.startswith("file:"):  # MLflow 3 refuses its file store unless asked for it
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(cfg.logger.project)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(cfg.logger.project)
        self.run_id = self.client.create_run(exp_id, run_name=cfg.logger.run_name or run_dir.name).info.run_id
        params = [Param(k, v) for k, v in flat(as_dict(cfg)).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(mlflow_key(k), float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        self.client.log_batch(self.run_id, metrics=batch)

    def table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        self.client.log_dict(self.run_id, {"columns": columns, "data": rows}, f"{name}/step_{step:06d}.json")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
