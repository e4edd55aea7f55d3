"""`rlsys train` / `python -m rlsys.train`: Hydra entry point of the RL loop."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from rlsys.config import ConfigError, register_configs, to_dataclass, validate

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
register_configs()


@hydra.main(config_path=CONF_DIR, config_name="config", version_base=None)
def main(dcfg: DictConfig) -> None:
    from rlsys.cluster import ClusterError
    from rlsys.controller import train
    from rlsys.data.dataset import DatasetError
    from rlsys.rollout.sampling import SamplingError

    try:
        cfg = validate(to_dataclass(dcfg))
        train(cfg)
    except (ConfigError, DatasetError, ClusterError, SamplingError) as e:  # bad input: one clear line, no traceback
        print(f"rlsys: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
