"""Infrastructure faults of stateless actors (verifiers, reference, teacher): retry on the
restarted actor, count it, and never let a lost answer pass as a real one. A hung actor (past its
deadline, rlsys/runtime/deadlines.py) is killed and handled as a death, counted as faults/hangs_<role>.

The actors are started with Ray's `max_restarts=-1`, so a killed one comes back by itself; a call
that was in flight when it died raises RayActorError here and is sent again (to the restarted
actor, or to another one). Each such event is a log line and a count the step reports. If the
retries fail too, the caller gets `ActorLost` and drops the samples it was for (counted): a
sample is trained only with a real reward and real reference log-probs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Callable

from rlsys.runtime.deadlines import ActorHung, Deadlines, get_within
from rlsys.runtime.watchdog import WAITS

log = logging.getLogger("rlsys.runtime.faults")

RETRIES = 2  # calls re-sent after an actor died mid-call, before its samples are given up
RESTART_TIMEOUT_S = 120.0  # how long to wait for Ray to bring a killed actor back before the next attempt


class ActorLost(RuntimeError):
    """A call whose actor died on every attempt; the message says which role and how often."""


class FaultLog:
    """Per role: actor deaths seen (each one restarted by Ray) and calls given up. Thread-safe:
    the pipeline's pools call from several threads."""

    def __init__(self):
        self._counts, self._lock = Counter(), threading.Lock()

    def add(self, metric: str, n: int = 1) -> None:
        """Count n events under their metric name (faults/...)."""
        if not n:  # only what happened is reported
            return
        with self._lock:
            self._counts[metric] += n

    def take(self) -> dict[str, int]:
        """Counts since the last take (one step's), as metrics."""
        with self._lock:
            out, self._counts = dict(self._counts), Counter()
        return dict(sorted(out.items()))


def call_with_retries(submit: Callable[[int], tuple[object, object]], role: str, faults: FaultLog,
                      retries: int = RETRIES, restart_timeout_s: float = RESTART_TIMEOUT_S,
                      deadlines: Deadlines | None = None, units: float = 1.0,
                      worst_case: float | Callable[[], float] = 0.0):
    """ray.get of the call submit(attempt) starts, returning (actor, ref); when the actor dies
    mid-call, or hangs past its deadline (then it is killed), wait for Ray to restart it and start
    the call again (submit may pick another actor). Raises ActorLost after retries + 1 failures.
    units, worst_case: the call's work and its own worst case (or a function giving it once the call is
    submitted), for its deadlines (rlsys/runtime/deadlines.py)."""
    import ray
    from ray.exceptions import RayActorError

    for attempt in range(retries + 1):
        actor, ref = submit(attempt)
        try:
            if deadlines is None:
                return ray.get(ref)
            worst = worst_case() if callable(worst_case) else worst_case
            return get_within(ref, actor, role, deadlines, units, worst, f"attempt {attempt + 1}")
        except ActorHung as e:
            faults.add(f"faults/hangs_{role}")
            last = e
            wait_restarted(actor, restart_timeout_s, role)
        except RayActorError as e:
            faults.add(f"faults/{role}_deaths")
            log.warning("%s actor died during a call (attempt %d of %d): %s", role, attempt + 1, retries + 1,
                        str(e).splitlines()[0][:200])
            last = e
            wait_restarted(actor, restart_timeout_s, role)
    raise ActorLost(f"{role}: the actor died or hung on all {retries + 1} attempts of one call "
                    f"({last.__class__.__name__})")


def wait_restarted(actor, timeout_s: float, role: str = "actor") -> bool:
    """Until the actor answers again (Ray restarts it: calls meanwhile fail with 'restarting'),
    it is dead for good, or timeout_s passes. True if it answers."""
    import ray
    from ray.exceptions import ActorDiedError, GetTimeoutError, RayActorError

    deadline = time.monotonic() + timeout_s
    with WAITS.waiting(role, "its actor, restarted by Ray, to come back"):
        while time.monotonic() < deadline:
            try:
                ray.get(actor.__ray_ready__.remote(), timeout=max(0.1, deadline - time.monotonic()))
                return True
            except ActorDiedError:  # no restarts left
                return False
            except (RayActorError, GetTimeoutError):
                time.sleep(0.5)
    return False
