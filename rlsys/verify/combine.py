"""Rewards that combine several verifiers (verifier.combine): which verifiers score which samples, in
two rounds (the gates first, then the other terms of the samples that passed them), and the sum.

A data_source without a combination is one term: its own verifier, weight 1. A sample of a combined
source whose gate fails gets reward 0 and its other terms are never scored (no judge call for an
answer the rule already rejects). A term that was lost (its actors died every time) makes the sample
lost (NaN): a sum without one of its terms is not the reward the config asks for.
"""

from __future__ import annotations

import math

from rlsys.data.batch import SUCCESS
from rlsys.verify.details import VerifierDetails

Result = tuple[float, VerifierDetails]


def terms_of(source: str, combine: dict) -> tuple[dict[str, float], str | None]:
    """(name -> weight, gate) of a data_source."""
    c = combine.get(source)
    return ({source: 1.0}, None) if c is None else (dict(c.terms), c.gate)


def first_round(sources: list[str], combine: dict) -> dict[str, list[int]]:
    """verifier name -> samples it scores first: every term of an ungated sample, the gate of a gated one."""
    jobs: dict[str, list[int]] = {}
    for i, s in enumerate(sources):
        terms, gate = terms_of(s, combine)
        for name in ([gate] if gate is not None else terms):
            jobs.setdefault(name, []).append(i)
    return jobs


def second_round(sources: list[str], combine: dict, done: dict[tuple[int, str], Result]) -> dict[str, list[int]]:
    """The remaining terms of gated samples whose gate gave full marks."""
    jobs: dict[str, list[int]] = {}
    for i, s in enumerate(sources):
        terms, gate = terms_of(s, combine)
        if gate is not None and _passed(done[i, gate][0]):
            for name in terms:
                if (i, name) not in done:
                    jobs.setdefault(name, []).append(i)
    return jobs


def combined(source: str, i: int, combine: dict, done: dict[tuple[int, str], Result]) -> Result:
    """The sample's reward and details from its terms' results."""
    terms, gate = terms_of(source, combine)
    if source not in combine:
        return done[i, source]
    parts = {n: done[i, n] for n in [*([gate] if gate else []), *terms] if (i, n) in done}
    extra = {"terms": {n: {"reward": r, **d.to_dict()} for n, (r, d) in parts.items()}}
    seconds = sum(d.seconds or 0.0 for _, d in parts.values())
    lost = [n for n, (r, _) in parts.items() if not math.isfinite(r)]
    if lost:
        return math.nan, VerifierDetails(reason=f"{', '.join(lost)} lost", lost=True, extra=extra,
                                         error="; ".join(f"{n}: {parts[n][1].error}" for n in lost))
    if gate is not None and not _passed(parts[gate][0]):
        g = parts[gate][1]
        return 0.0, VerifierDetails(reason=f"gate {gate} not passed: {g.reason}", error=g.error, timeout=g.timeout,
                                    seconds=seconds, extra={"parsed": g.parsed, **extra})
    reward = float(sum(w * parts[n][0] for n, w in terms.items()))
    errors = [f"{n}: {d.error}" for n, (_, d) in parts.items() if d.error]
    parsed = next((d.parsed for _, d in parts.values() if d.parsed is not None), None)
    return reward, VerifierDetails(reason=" + ".join(f"{w:g} x {n} {parts[n][0]:.4g}" for n, w in terms.items()),
                                   error="; ".join(errors) or None, timeout=any(d.timeout for _, d in parts.values()),
                                   seconds=seconds, extra={"parsed": parsed, **extra})


def _passed(reward: float) -> bool:
    return math.isfinite(reward) and reward >= SUCCESS
