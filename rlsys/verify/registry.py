"""The verifier registry and this process's verifier settings (a leaf: built-in verifiers and
plugins import it, and rlsys.verify imports them)."""

from __future__ import annotations

from typing import Callable

from rlsys.config import VerifierConfig

Verifier = Callable[[str, str], tuple[float, dict]]  # (response, ground_truth[, extra_info=dict]) -> (reward, details)
VERIFIERS: dict[str, Verifier] = {}
CHECKS: dict[str, Callable[[str], object]] = {}
TAKES_EXTRA_INFO: set[str] = set()  # data_sources whose verifier has an extra_info parameter (verl rows' extra_info)
SETTINGS = VerifierConfig()  # this process's verifier config (limits, remote URL); see configure()


def register_verifier(data_source: str, check: Callable[[str], object] | None = None):
    def wrap(fn: Verifier) -> Verifier:
        import inspect

        VERIFIERS[data_source] = fn
        TAKES_EXTRA_INFO.discard(data_source)
        if "extra_info" in inspect.signature(fn).parameters:
            TAKES_EXTRA_INFO.add(data_source)
        if check is not None:
            CHECKS[data_source] = check
        return fn

    return wrap


def configure(cfg: VerifierConfig) -> None:
    """Set the limits and endpoints the verifiers of this process read; import verifier.modules."""
    import importlib

    global SETTINGS
    SETTINGS = cfg
    for name in cfg.modules:
        importlib.import_module(name)


def settings() -> VerifierConfig:
    return SETTINGS


def known_sources(cfg: VerifierConfig | None = None) -> set[str]:
    """data_sources a dataset may use: "remote" only when an endpoint is configured; reward models
    (verifier.models) and combinations (verifier.combine) by their names."""
    cfg = cfg or SETTINGS
    return {s for s in VERIFIERS if s != "remote" or cfg.remote_url} | set(cfg.models) | set(cfg.combine)


def check_ground_truth(data_source: str, ground_truth: str) -> None:
    """Raise ValueError if a rule verifier of data_source (its own, or a term of its combination) could
    never accept this ground truth."""
    c = SETTINGS.combine.get(data_source)
    names = [data_source] if c is None else [*c.terms, *([c.gate] if c.gate else [])]
    for name in names:
        check = CHECKS.get(name)
        if check is not None:
            check(ground_truth)
