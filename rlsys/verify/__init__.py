"""Verifier registry keyed by a dataset row's data_source.

A verifier is one function (response_text, ground_truth) -> (reward, details dict).
Adding one: write the function, decorate it with @register_verifier("<data_source>").
"""

from __future__ import annotations

import re
from typing import Callable

Verifier = Callable[[str, str], tuple[float, dict]]
VERIFIERS: dict[str, Verifier] = {}


def register_verifier(data_source: str):
    def wrap(fn: Verifier) -> Verifier:
        VERIFIERS[data_source] = fn
        return fn

    return wrap


_INT = re.compile(r"-?\d+")


@register_verifier("arithmetic")
def arithmetic_exact_match(response: str, ground_truth: str) -> tuple[float, dict]:
    """Exact match of the last integer in the response against the ground truth."""
    found = _INT.findall(response)
    answer = found[-1] if found else None
    if answer is None:
        return 0.0, {"parsed": None, "reason": "no integer in response"}
    ok = int(answer) == int(ground_truth)
    return float(ok), {"parsed": answer, "reason": "match" if ok else "mismatch"}
