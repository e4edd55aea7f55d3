"""Deadlines for the controller's waits on actors, derived from what the run has measured, and the
liveness probe that tells a slow actor from a stuck one.

A call of `units` of work (samples, tokens) on a kind of call ("verifier", "learner:train_step") has
two limits, times cluster.deadline_scale (0 = wait forever):
- suspect: max(FLOOR_S, SUSPECT_FACTOR x p99 seconds per unit x units). Past it the actor must answer a
  liveness probe (`ping`, in its own concurrency group, so a busy actor still answers) within FLOOR_S;
  one that does not is stopped, not slow: hung.
- hung: max(FLOOR_S, HANG_FACTOR x the larger of p99 x units and the p99 of whole calls) plus the call's
  own worst case (a verifier's sandbox timeouts): past it the actor is hung even if it answers probes
  (its work is stuck, not its process). Generous on purpose: a false "hung" costs a restart, while a
  stopped process is found at the suspect deadline; whole calls cover the fixed cost a small call pays
  (an optimizer step, a collective).
Before a kind of call has been measured, both are START_S (start-up loads models; nothing to derive
from yet). cluster.deadline_s.<role> fixes a role's limits instead. A hung actor is killed; the caller
handles it as a death (re-send, re-score, rebuild), under the same budgets.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

import numpy as np

from rlsys.runtime.notices import notice
from rlsys.runtime.watchdog import WAITS

FLOOR_S, SUSPECT_FACTOR, HANG_FACTOR, START_S = 30.0, 3.0, 10.0, 900.0
RECOMPUTE_S = 1.0  # percentiles of a kind of call are at most this old (deadlines are >= FLOOR_S anyway)
PROBE_GROUP = {"probe": 1}  # actors made with ray.remote(concurrency_groups=PROBE_GROUP) answer `ping` beside a running call


class ProbedActor:
    """Base of the scoring actors (verifiers, reward models): answers start-up, liveness probes and its pid."""

    def ready(self) -> bool:
        return True

    def ping(self) -> bool:
        """Liveness probe, answered in its own concurrency group (PROBE_GROUP)."""
        return True

    def pid(self) -> int:
        """This actor's process (tests kill it to check the pools' fault handling)."""
        import os

        return os.getpid()


class ActorHung(RuntimeError):
    """An actor alive but stuck past its deadline; it has been killed."""


class Deadlines:
    """Measured seconds per unit of work per kind of call, and the limits derived from them. Thread-safe."""

    def __init__(self, scale: float = 1.0, fixed: dict[str, float] | None = None):
        """scale: cluster.deadline_scale; fixed: role -> seconds (cluster.deadline_s; 0 = derived)."""
        self.scale, self.fixed = scale, {k: v for k, v in (fixed or {}).items() if v > 0}
        self._seen: dict[str, deque] = {}  # kind -> (seconds per unit, seconds) of its newest calls
        self._p99: dict[str, tuple[float, float]] = {}  # kind -> their 99th percentiles
        self._computed: dict[str, float] = {}  # kind -> when its percentiles were last computed
        self._lock = threading.Lock()

    def record(self, kind: str, seconds: float, units: float = 1.0) -> None:
        self.record_many(kind, [(seconds, units)])

    def record_many(self, kind: str, calls: list[tuple[float, float]]) -> None:
        """(seconds, units) of several calls at once. The percentiles are recomputed at most every
        RECOMPUTE_S per kind (at thousands of calls a step, computing them per call cost seconds of
        CPU), and always while a kind has few measurements."""
        with self._lock:
            seen = self._seen.setdefault(kind, deque(maxlen=1000))
            seen.extend((seconds / max(units, 1.0), seconds) for seconds, units in calls)
            now = time.monotonic()
            if len(seen) < 100 or now - self._computed.get(kind, -math.inf) >= RECOMPUTE_S:
                per_unit, per_call = np.percentile(np.array(seen), 99, axis=0)
                self._p99[kind], self._computed[kind] = (float(per_unit), float(per_call)), now

    def limits(self, kind: str, units: float = 1.0, worst_case: float = 0.0) -> tuple[float, float]:
        """(suspect, hung) seconds for a call of `units` of work of this kind."""
        role = role_of(kind)
        if self.scale <= 0:
            return math.inf, math.inf
        if role in self.fixed:
            return min(self.fixed[role], self.scale * FLOOR_S), self.fixed[role]
        if kind not in self._p99:
            return self.scale * START_S, self.scale * (START_S + worst_case)
        per_unit, per_call = self._p99[kind]
        work = per_unit * max(units, 1.0)
        return (self.scale * max(FLOOR_S, SUSPECT_FACTOR * work),
                self.scale * (max(FLOOR_S, HANG_FACTOR * max(work, per_call)) + worst_case))

    @property
    def probe_s(self) -> float:
        """How long a liveness probe may take."""
        return math.inf if self.scale <= 0 else self.scale * FLOOR_S


def role_of(kind: str) -> str:
    """The role a kind of call belongs to ("learner:train_step" -> "learner"; the teacher is a reference server)."""
    role = kind.split(":")[0]
    return "reference" if role == "teacher" else role


def next_check(elapsed: float, suspect: float, hung: float) -> float | None:
    """Seconds until a call's next deadline check (None: never): at the suspect deadline, then every
    `suspect` seconds until the hung one."""
    if math.isinf(suspect):
        return None
    check = suspect if elapsed < suspect else min(hung, elapsed + suspect)
    return max(0.0, check - elapsed)


def answers_probe(actor, timeout: float) -> bool:
    """The actor answers `ping` within timeout (a dead one counts as answering: its call fails on its own)."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    try:
        ray.get(actor.ping.options(concurrency_group="probe").remote(), timeout=None if math.isinf(timeout) else timeout)
        return True
    except GetTimeoutError:
        return False
    except RayActorError:
        return True


def get_within(ref, actor, kind: str, deadlines: Deadlines, units: float = 1.0, worst_case: float = 0.0,
               what: str = ""):
    """ray.get(ref), a call on `actor`, under the deadlines of its kind; the time it took is recorded.
    A stuck actor is killed (Ray restarts it if it may) and ActorHung raised."""
    import ray

    t0 = time.monotonic()
    suspect, hung = deadlines.limits(kind, units, worst_case)
    with WAITS.waiting(kind, what or f"{units:g} units of work"):
        while True:
            ready, _ = ray.wait([ref], timeout=next_check(time.monotonic() - t0, suspect, hung))
            if ready:
                out = ray.get(ref)
                deadlines.record(kind, time.monotonic() - t0, units)
                return out
            elapsed = time.monotonic() - t0
            if elapsed >= hung:
                why = f"did not finish within its deadline of {hung:.0f} s"
            elif not answers_probe(actor, deadlines.probe_s):
                why = f"did not answer a liveness probe within {deadlines.probe_s:.0f} s, {elapsed:.0f} s into the call"
            else:
                continue
            raise kill_hung(actor, f"{kind} actor {why} ({what or 'a call'}; cluster.deadline_scale="
                                   f"{deadlines.scale}): killed and handled as a death")


def kill_hung(actor, message: str) -> ActorHung:
    """Kill a stuck actor (Ray restarts it if its max_restarts allows); the error to raise, logged."""
    import ray

    notice(message)
    ray.kill(actor, no_restart=False)
    return ActorHung(message)
