"""`wandb`: Weights & Biases, offline by default (logger.wandb_mode): runs under <run>/wandb,
`wandb sync` uploads them later. Tables are wandb.Table."""

from __future__ import annotations

from pathlib import Path


class WandbBackend:
    def __init__(self, cfg, run_dir: Path):
        import wandb

        from rlsys.config import as_dict

        self.wandb = wandb
        self.run = wandb.init(project=cfg.logger.project, name=cfg.logger.run_name or run_dir.name, dir=str(run_dir),
                              mode=cfg.logger.wandb_mode, config=as_dict(cfg),
                              settings=wandb.Settings(console="off", silent=True))

    def log(self, metrics: dict, step: int) -> None:
        self.run.log({k: v for k, v in metrics.items() if v is not None}, step=step)

    def table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        self.run.log({name: self.wandb.Table(columns=columns, data=rows)}, step=step)

    def close(self) -> None:
        self.run.finish()
        # finish() only asks W&B's service process to close the run; its transaction log (the
        # .wandb file `wandb sync` uploads) is complete once that process has shut down.
        self.wandb.teardown()
