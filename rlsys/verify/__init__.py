"""Verifier registry keyed by a dataset row's data_source.

A verifier is one function (response_text, ground_truth) -> (reward, details dict); one that also
declares an `extra_info` parameter gets the row's extra_info (verl datasets). Adding one:
write the function and decorate it with @register_verifier("<data_source>"); pass check= a
function that raises ValueError on a malformed ground truth, and datasets are checked with it at
load time. Verifiers run in scorer processes of the pool (rlsys/verify/worker.py), which enforce
the per-sample timeout and turn exceptions into reward 0 with an error.

Built in: arithmetic (exact match), math (\\boxed{} / "the answer is" + math-verify),
calc (the tool task's answer after its last tool output), code (a Python program against tests, sandboxed), remote (POST to verifier.remote_url), gsm8k
("#### n" answers), similarity (word-sequence similarity in [0, 1], a dense reward), and verl's
data_source names as aliases (rlsys/verify/verl_sources.py).
"""

from __future__ import annotations

import re

from rlsys.verify.registry import (CHECKS, VERIFIERS, Verifier, check_ground_truth, configure, known_sources,  # noqa: F401
                                   register_verifier, settings)

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


@register_verifier("calc", check=_is_int)
def calc_answer(response: str, ground_truth: str) -> tuple[float, dict]:
    """The tool task (rlsys/agents/calculator.py): the last integer after the last tool output `</out>`."""
    return arithmetic_exact_match(response.rsplit("</out>", 1)[-1], ground_truth)


# Importing them registers the other built-in verifiers.
from rlsys.verify import code_tests, math_answer, remote, similarity  # noqa: E402,F401
from rlsys.verify import verl_sources  # noqa: E402,F401  (after math: gsm8k and verl's data_source names)
