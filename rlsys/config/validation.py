"""All checks of a composed config, in one call: the config's own (rlsys/config/__init__.py) and each part's
rules for its section. It sits above both, so rlsys.config imports no part that reads it back."""

from __future__ import annotations

from rlsys.config import RLSysConfig, check_config
from rlsys.rollout.engine_options import validate_rollout_extras


def validate(cfg: RLSysConfig) -> RLSysConfig:
    """cfg, if every check passes; else ConfigError naming the key."""
    check_config(cfg)
    validate_rollout_extras(cfg)  # speculative decoding, sync backend, colocation
    return cfg
