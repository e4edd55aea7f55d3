"""Math verifier: the final answer from \\boxed{} (or "the answer is ..."), equivalence by math-verify.

math-verify (sympy) is imported on first use; its own signal-based timeouts are off because the
scorer process enforces verifier.timeout_s from outside (and reports a timeout as a timeout, not
as a wrong answer).
"""

from __future__ import annotations

import re

from rlsys.verify.registry import register_verifier, settings

_BOX = re.compile(r"\\(?:boxed|fbox)\s*")
_ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*(.+)", re.IGNORECASE)


def all_boxed(text: str) -> list[str]:
    """Contents of every \\boxed{...} (balanced braces) or \\boxed x, in order."""
    found = []
    for m in _BOX.finditer(text):
        i = m.end()
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    found.append(text[i + 1:j].strip())
                    break
            continue  # unbalanced: skipped
        token = re.match(r"[^\s$]+", text[i:])
        if token:
            found.append(token.group(0))
    return found


def last_boxed(text: str) -> str | None:
    found = all_boxed(text)
    return found[-1] if found else None


def _strip_answer(ans: str) -> str:
    ans = ans.strip().strip("*").strip().rstrip(".").strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if ans.startswith(left) and ans.endswith(right) and len(ans) > len(left) + len(right):
            ans = ans[len(left):-len(right)].strip()
    return ans.rstrip(".").strip()


def extract_answer(response: str) -> tuple[str | None, str]:
    """(answer, where it came from): the last \\boxed{}, else the last "the answer is X" line."""
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed, "boxed"
    found = _ANSWER_IS.findall(response)
    if found:
        line = found[-1].splitlines()[0]
        boxed = last_boxed(line)
        return _strip_answer(boxed if boxed is not None else line), "answer is"
    return None, "none"


def _parse(latex: str):
    import math_verify.grader
    import math_verify.parser
    from math_verify import parse

    # The scorer process is the timeout; silence the warnings about math-verify's own being off.
    math_verify.grader.TIMEOUT_WARNING_SHOWN = math_verify.parser.TIMEOUT_WARNING_SHOWN = True

    return parse(f"${latex}$", parsing_timeout=None)


def check_math_truth(ground_truth: str) -> None:
    if not ground_truth.strip():
        raise ValueError("empty math ground truth")


@register_verifier("math", check=check_math_truth)
def math_equivalence(response: str, ground_truth: str) -> tuple[float, dict]:
    from math_verify import verify

    answer, where = extract_answer(response)
    boxes = {_normal(b) for b in all_boxed(response)}
    if len(boxes) > 1:  # hedging ("\\boxed{1} or \\boxed{2}") must not collect the reward
        return 0.0, {"parsed": answer, "reason": f"{len(boxes)} different \\boxed{{}} answers (hedging)"}
    if not answer:
        return 0.0, {"parsed": None, "reason": "no final answer (\\boxed{...} or 'the answer is ...')"}
    truth = last_boxed(ground_truth) or ground_truth
    gold = _parse(truth)
    if not gold:
        raise ValueError(f"ground truth {truth!r} is not parseable as math")
    if _normal(answer) == _normal(truth):
        return 1.0, {"parsed": answer, "reason": f"match ({where}, identical)"}
    pred = _parse(answer)
    if not pred:
        return 0.0, {"parsed": answer, "reason": f"answer not parseable as math ({where})"}
    if verify(gold, pred, timeout_seconds=None):
        return 1.0, {"parsed": answer, "reason": f"match ({where})"}
    # verl's format_score: a wrong answer still earns this when it is well-formed (one parseable \boxed{})
    return (settings().format_score if where == "boxed" else 0.0), {"parsed": answer, "reason": f"mismatch ({where})"}


def _normal(s: str) -> str:
    return re.sub(r"\s+|\\[,!;]|\\left|\\right", "", s)
