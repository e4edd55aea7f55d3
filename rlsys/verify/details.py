"""What the verifier pool says about a sample besides its reward (RolloutBatch.verifier_details).

A verifier itself returns a plain dict (its plugin interface, rlsys/verify/registry.py); the scorer
turns it into VerifierDetails: the keys every sample may have become fields, the verifier's own
keys (parsed, tests, stdout, ...) stay in `extra`. to_dict() gives back the flat dict the rollout
log and `rlsys verify` write.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VerifierDetails:
    reason: str = ""  # why this reward: the verifier's words, or why it could not give one
    error: str | None = None  # the verifier raised, timed out or crashed, or no actor could score the sample
    timeout: bool = False  # the verifier (or the program it ran) went past its time limit
    lost: bool = False  # no verifier actor could score the sample: its reward is NaN, never a made-up 0
    seconds: float | None = None  # the verifier's time on the sample (None: never ran, lost)
    extra: dict = field(default_factory=dict)  # the verifier's own keys, e.g. parsed, tests, stdout

    @property
    def parsed(self):
        """The answer (or program) the verifier read from the response; None if it found none."""
        return self.extra.get("parsed")

    @staticmethod
    def from_dict(details: dict) -> VerifierDetails:
        """A flat dict (a verifier's, or an old checkpoint's), its common keys lifted into fields."""
        rest = dict(details)
        return VerifierDetails(reason=rest.pop("reason", ""), error=rest.pop("error", None),
                               timeout=bool(rest.pop("timeout", False)), lost=bool(rest.pop("lost", False)),
                               seconds=rest.pop("seconds", None), extra=rest)

    def to_dict(self) -> dict:
        """The flat dict: the verifier's keys, then the common ones that are set."""
        out = {**self.extra, "reason": self.reason}
        if self.error is not None:
            out["error"] = self.error
        if self.timeout:
            out["timeout"] = True
        if self.lost:
            out["lost"] = True
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out
