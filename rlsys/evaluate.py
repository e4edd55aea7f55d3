"""`rlsys eval` / `python -m rlsys.evaluate`: Hydra entry point of pass@k evaluation."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from rlsys.config import ConfigError, register_configs, to_dataclass, validate
from rlsys.train import CONF_DIR

register_configs()


@hydra.main(config_path=CONF_DIR, config_name="config", version_base=None)
def main(dcfg: DictConfig) -> None:
    from rlsys.cluster import ClusterError
    from rlsys.data.dataset import DatasetError
    from rlsys.eval.run import check_eval_config, evaluate_checkpoints

    try:
        cfg = validate(to_dataclass(dcfg))
        check_eval_config(cfg)
        evaluate_checkpoints(cfg)
    except (ConfigError, DatasetError, ClusterError) as e:  # bad input: one clear line, no traceback
        print(f"rlsys: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
