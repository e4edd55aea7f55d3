"""Dense verifier: word-sequence similarity between the response and the ground truth, in [0, 1].

The score is difflib's ratio 2M / (|a| + |b|) over the two word sequences (M: words in matching
blocks, in order), compared case-blind with punctuation dropped: the exact sequence scores 1, the
right words in a slightly wrong order or with an extra preamble score in between, so a group of
samples is rarely all equal and every step has a gradient (the reverse_words task).
"""

from __future__ import annotations

import difflib
import re

from rlsys.verify.registry import register_verifier

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _has_words(ground_truth: str) -> None:
    if not words(ground_truth):
        raise ValueError("ground truth has no words to compare against")


@register_verifier("similarity", check=_has_words)
def word_similarity(response: str, ground_truth: str) -> tuple[float, dict]:
    got, want = words(response), words(ground_truth)
    score = difflib.SequenceMatcher(None, got, want, autojunk=False).ratio()
    return score, {"parsed": " ".join(got[:64]), "reason": "exact" if got == want else f"similarity {score:.3f}"}
