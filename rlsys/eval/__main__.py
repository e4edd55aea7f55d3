"""`rlsys eval` / `python -m rlsys.eval`: Hydra entry point of pass@k evaluation."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from rlsys.train import CONF_DIR, reject_renamed_keys, run_command


def evaluate(cfg) -> None:
    from rlsys.eval.run import check_eval_config, evaluate_checkpoints

    check_eval_config(cfg)
    evaluate_checkpoints(cfg)


@hydra.main(config_path=CONF_DIR, config_name="config", version_base=None)
def main(dcfg: DictConfig) -> None:
    run_command(dcfg, evaluate)


if __name__ == "__main__":
    reject_renamed_keys(sys.argv[1:])
    main()
