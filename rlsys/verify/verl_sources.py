"""verl's data_source names mapped to our verifiers, and a GSM8K verifier for its "#### n" answers.

A verl dataset names the dataset it came from ("openai/gsm8k", "lighteval/MATH", ...) where rlsys
names a verifier; each such name is registered as an alias of the verifier that scores it, so
rows keep their data_source (per-source metrics read as in verl) and the pool finds a verifier.
"""

from __future__ import annotations

import re

from rlsys.verify.registry import CHECKS, VERIFIERS, register_verifier

# verl data_source -> our verifier (competition math: \boxed{} answers, math-verify equivalence)
VERL_SOURCES = {
    "openai/gsm8k": "gsm8k",
    "gsm8k": "gsm8k",
    "lighteval/MATH": "math",
    "DigitalLearningGmbH/MATH-lighteval": "math",
    "HuggingFaceH4/MATH-500": "math",
    "math_dapo": "math",
    "aime24": "math",
    "aime25": "math",
    "aime2024": "math",
    "aime2025": "math",
    "numina_aops_forum": "math",
    "numina_synthetic_math": "math",
    "numina_amc_aime": "math",
    "numina_synthetic_amc": "math",
    "numina_cn_k12": "math",
    "numina_olympiads": "math",
}
_HASHES = re.compile(r"####\s*(-?[\d,]*\.?\d+)")
_NUMBER = re.compile(r"-?[\d,]*\.?\d+")


def gsm8k_truth(ground_truth: str) -> str:
    """The number of a GSM8K answer: after "####" when the full solution is given, commas dropped."""
    text = ground_truth.split("####")[-1]
    found = _NUMBER.findall(text)
    if not found:
        raise ValueError(f"no number in GSM8K ground truth {ground_truth!r}")
    return found[-1].replace(",", "")


def _as_number(text: str) -> float:
    return float(text.replace(",", "").rstrip("."))


@register_verifier("gsm8k", check=gsm8k_truth)
def gsm8k_match(response: str, ground_truth: str) -> tuple[float, dict]:
    """The response's "#### n" (GSM8K's format), else its last \\boxed{}, else its last number, equal to the truth."""
    from rlsys.verify.math_answer import last_boxed

    truth = _as_number(gsm8k_truth(ground_truth))
    hashes = _HASHES.findall(response)
    boxed = last_boxed(response)
    numbers = _NUMBER.findall(boxed if boxed is not None else response)
    answer, how = (hashes[-1], "####") if hashes else ((numbers[-1], "boxed" if boxed is not None else "last number")
                                                       if numbers else (None, None))
    if answer is None:
        return 0.0, {"parsed": None, "reason": "no number in response"}
    ok = abs(_as_number(answer) - truth) < 1e-6
    return float(ok), {"parsed": answer, "reason": f"{how}: {'match' if ok else 'mismatch'}"}


def register_aliases() -> None:
    for source, verifier in VERL_SOURCES.items():
        if source not in VERIFIERS:
            VERIFIERS[source] = VERIFIERS[verifier]
            if verifier in CHECKS:
                CHECKS[source] = CHECKS[verifier]


register_aliases()
