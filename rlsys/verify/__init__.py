"""Verifier registry keyed by a dataset row's data_source.

A verifier is one function (response_text, ground_truth) -> (reward, details dict). Adding one:
write the function and decorate it with @register_verifier("<data_source>"); pass check= a
function that raises ValueError on a malformed ground truth, and datasets are checked with it at
load time. Verifiers run in scorer processes of the pool (rlsys/verify/worker.py), which enforce
the per-sample timeout and turn exceptions into reward 0 with an error.

Built in: arithmetic (exact match), math (\\boxed{} / "the answer is" + math-verify),
code (a Python program against tests, sandboxed), remote (POST to verifier.remote_url).
"""

from __future__ import annotations

import re
from typing import Callable

from rlsys.config import VerifierConfig

Verifier = Callable[[str, str], tuple[float, dict]]
VERIFIERS: dict[str, Verifier] = {}
CHECKS: dict[str, Callable[[str], object]] = {}
SETTINGS = VerifierConfig()  # this process's verifier config (limits, remote URL); see configure()


def register_verifier(data_source: str, check: Callable[[str], object] | None = None):
    def wrap(fn: Verifier) -> Verifier:
        VERIFIERS[data_source] = fn
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
    """data_sources a dataset may use: "remote" only when an endpoint is configured."""
    cfg = cfg or SETTINGS
    return {s for s in VERIFIERS if s != "remote" or cfg.remote_url}


def check_ground_truth(data_source: str, ground_truth: str) -> None:
    """Raise ValueError if the verifier of data_source could never accept this ground truth."""
    check = CHECKS.get(data_source)
    if check is not None:
        check(ground_truth)


_INT = re.compile(r"-?\d+")


def _is_int(text: str) -> None:
    int(text)


@register_verifier("arithmetic", check=_is_int)
def arithmetic_exact_match(response: str, ground_truth: str) -> tuple[float, dict]:
    """Exact match of the last integer in the response against the ground truth."""
    found = _INT.findall(response)
    answer = found[-1] if found else None
    if answer is None:
        return 0.0, {"parsed": None, "reason": "no integer in response"}
    ok = int(answer) == int(ground_truth)
    return float(ok), {"parsed": answer, "reason": "match" if ok else "mismatch"}


# Importing them registers the other built-in verifiers.
from rlsys.verify import code_tests, math_answer, remote  # noqa: E402,F401
