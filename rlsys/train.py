"""`rlsys train` / `python -m rlsys.train`: Hydra entry point of the RL loop."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import hydra
from omegaconf import DictConfig

from rlsys.config import ConfigError, RLSysConfig, register_configs, to_dataclass
from rlsys.config.validation import validate

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
register_configs()


def run_command(dcfg: DictConfig, action: Callable[[RLSysConfig], object]) -> None:
    """Validate the composed config and run `action`; bad input ends in one clear line and exit 2."""
    from rlsys.runtime.cluster import ClusterError
    from rlsys.data.dataset import DatasetError
    from rlsys.loop.pipeline import SamplingError
    from rlsys.runtime.signals import Terminated, sigterm_interrupts

    try:
        with sigterm_interrupts():  # SIGTERM (preemption, `ray job stop`) ends the run as Ctrl-C does
            action(validate(to_dataclass(dcfg)))
    except (ConfigError, DatasetError, ClusterError, SamplingError) as e:  # no traceback for bad input
        print(f"rlsys: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:  # the run has said where it stopped; 130 / 143 as a shell would report
        terminated = isinstance(e, Terminated)
        print(f"rlsys: {'terminated (SIGTERM)' if terminated else 'interrupted'}", file=sys.stderr)
        sys.exit(143 if terminated else 130)


def reject_renamed_keys(overrides: list[str]) -> None:
    """A renamed key on the command line ends in one line naming its new key, and exit 2 (Hydra
    itself would only say that the old key is not in the schema)."""
    from rlsys.config.renamed_keys import check_overrides

    try:
        check_overrides(overrides)
    except ConfigError as e:
        print(f"rlsys: error: {e}", file=sys.stderr)
        sys.exit(2)


@hydra.main(config_path=CONF_DIR, config_name="config", version_base=None)
def main(dcfg: DictConfig) -> None:
    from rlsys.loop.controller import train

    run_command(dcfg, train)


if __name__ == "__main__":
    reject_renamed_keys(sys.argv[1:])
    main()
