"""A watchdog that speaks: when a step runs past a multiple of its median time, the log says every
EVERY_S seconds what the controller waits on, for how long, and when each wait last made progress.

Every wait on an actor registers itself in WAITS (rlsys/runtime/deadlines.py does for calls under a
deadline; the fleet registers its streaming calls with a live description), so the watchdog knows
what is outstanding without the waits reporting to it.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from contextlib import contextmanager
from typing import Callable

# Speak every EVERY_S once a step is past max(MIN_S, 3 x the median step); the first step (start-up:
# models load, vLLM builds) only past FIRST_S.
EVERY_S, SLOW_FACTOR, MIN_S, FIRST_S = 30.0, 3.0, 60.0, 300.0


class Waits:
    """What the process waits on now: id -> (kind, description, since). Thread-safe."""

    def __init__(self):
        self._open: dict[int, tuple[str, Callable[[], str] | str, float]] = {}
        self._ids, self._lock = itertools.count(), threading.Lock()

    @contextmanager
    def waiting(self, kind: str, what: Callable[[], str] | str):
        """Register a wait for its duration; `what` is a text, or a callable giving the current one."""
        key = next(self._ids)
        with self._lock:
            self._open[key] = (kind, what, time.monotonic())
        try:
            yield
        finally:
            with self._lock:
                self._open.pop(key, None)

    def describe(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            items = list(self._open.values())
        out = []
        for kind, what, since in sorted(items, key=lambda w: w[2]):
            try:
                text = what() if callable(what) else what
            except Exception as e:  # a description must never break the watchdog
                text = f"(no description: {type(e).__name__})"
            out.append(f"{kind}: {text}, waiting {now - since:.0f} s")
        return out


WAITS = Waits()


class Watchdog:
    """Started around the RL loop: step_started/step_ended mark the steps; a daemon thread speaks."""

    def __init__(self, log: Callable[[str], None] = print, every_s: float = EVERY_S, waits: Waits = WAITS,
                 min_s: float = MIN_S, first_s: float = FIRST_S):
        self.log, self.every_s, self.waits, self.min_s, self.first_s = log, every_s, waits, min_s, first_s
        self.times: list[float] = []  # seconds of the finished steps
        self.step, self.started = 0, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rlsys-watchdog", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()

    def step_started(self, step: int) -> None:
        self.step, self.started = step, time.monotonic()

    def step_ended(self) -> None:
        if self.started is not None:
            self.times.append(time.monotonic() - self.started)
        self.started = None

    def overdue(self) -> float | None:
        """Seconds the current step has run, if past its limit."""
        if self.started is None:
            return None
        ran = time.monotonic() - self.started
        limit = max(self.min_s, SLOW_FACTOR * statistics.median(self.times)) if self.times else self.first_s
        return ran if ran > limit else None

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            ran = self.overdue()
            if ran is None:
                continue
            median = f"{statistics.median(self.times):.1f} s" if self.times else "none yet"
            waits = self.waits.describe() or ["nothing registered (the controller computes, or waits outside an actor call)"]
            self.log(f"[rlsys] watchdog: step {self.step} has run {ran:.0f} s (median step {median}); waiting on: "
                     + "; ".join(waits))
