"""What reward models and judges read and what their answers mean (pure functions: the pool calls them
in the driver, the actors only run the models).

A judge's verdict is parsed, never guessed: an answer that says neither yes nor no, or both, or a
score outside [score_min, score_max], is reward 0 with the reason and the judge's text in the details.
"""

from __future__ import annotations

import math
import re

_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_NUMBER = r"([-+]?\d+(?:\.\d+)?)"
_SCORE_PATTERNS = (  # tried in order; the first that matches decides. Never "any number": a judge that
    # redoes the sum ("12 + 7 = 19") would be read as scoring it
    re.compile(r"\b(?:score|rating|grade)\s*(?:is|of)?\s*[:=]?\s*\**\s*" + _NUMBER, re.IGNORECASE),
    re.compile(_NUMBER + r"\s*(?:/|out of)\s*(\d+(?:\.\d+)?)", re.IGNORECASE),  # only "of score_max" counts
    re.compile(r"^\s*" + _NUMBER + r"\s*[.!]?\s*$"),  # the whole answer is the number
)


def prompt_text(messages: list[dict]) -> str:
    """A prompt for a judge's template: the one user message's text, or each message as `role: content`."""
    if len(messages) == 1 and messages[0].get("role") == "user":
        return messages[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def judge_messages(template: str, prompt: list[dict], response: str, ground_truth: str) -> list[dict]:
    """The chat the judge answers: the template filled with the sample, as one user message."""
    return [{"role": "user", "content": template.format(prompt=prompt_text(prompt), response=response,
                                                        ground_truth=ground_truth)}]


def parse_verdict(text: str, verdict: str, score_min: float = 1.0, score_max: float = 10.0,
                  pattern: str | None = None) -> tuple[float | None, str, str]:
    """(reward in [0, 1] or None when unparseable, the verdict as read, the reason)."""
    if pattern is not None:
        m = re.search(pattern, text, re.IGNORECASE | re.DOTALL)
        if m is None:
            return None, "", f"no verdict: the answer does not match the pattern {pattern!r}"
        found = m.group(1).strip()
        return (_yes_no(found.lower()) if verdict == "yes_no" else _score(found, score_min, score_max))
    if verdict == "yes_no":
        words = {w.lower() for w in _YES_NO.findall(text)}
        if len(words) != 1:
            return None, "", ("no verdict: the answer says neither yes nor no" if not words
                              else "no verdict: the answer says both yes and no")
        return _yes_no(words.pop())
    for p in _SCORE_PATTERNS:
        for m in p.finditer(text):
            if p.groups == 2 and float(m.group(2)) != score_max:  # "1/2" in the answer is not a score out of 10
                continue
            return _score(m.group(1), score_min, score_max)
    return None, "", "no verdict: no score in the answer"


def _yes_no(word: str) -> tuple[float | None, str, str]:
    if word not in ("yes", "no"):
        return None, word, f"no verdict: {word!r} is neither yes nor no"
    return float(word == "yes"), word, f"verdict {word}"


def _score(found: str, lo: float, hi: float) -> tuple[float | None, str, str]:
    try:
        value = float(found)
    except ValueError:
        return None, found, f"no verdict: {found!r} is not a number"
    if not lo <= value <= hi:
        return None, found, f"no verdict: score {value:g} is outside [{lo:g}, {hi:g}]"
    return (value - lo) / (hi - lo), found, f"score {value:g} of {hi:g}"


def scalar_reward(raw: float, normalize: str) -> float:
    """A scalar reward model's value as the reward: sigmoid(raw) in (0, 1), or raw itself."""
    if normalize == "raw":
        return float(raw)
    return 1.0 / (1.0 + math.exp(-raw)) if raw >= 0 else math.exp(raw) / (1.0 + math.exp(raw))
