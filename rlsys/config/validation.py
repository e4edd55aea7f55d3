"""All checks of a composed config, in one call: the config's own (rlsys/config/__init__.py) and each part's
rules for its section. It sits above both, so rlsys.config imports no part that reads it back."""

from __future__ import annotations

from rlsys.config import RLSysConfig, _check, check_config
from rlsys.config.rewards import check_rewards
from rlsys.rollout.engine_options import validate_rollout_extras
from rlsys.verify.registry import VERIFIERS


def validate(cfg: RLSysConfig) -> RLSysConfig:
    """cfg, if every check passes; else ConfigError naming the key."""
    check_config(cfg)
    validate_rollout_extras(cfg)  # speculative decoding, sync backend, colocation
    check_rewards(cfg.verifier, set(VERIFIERS), _check)  # verifier.models, verifier.combine against the registry
    return cfg
