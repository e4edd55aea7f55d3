"""The `[rlsys] ...` lines that say what went wrong and what was done about it (a hung engine killed,
an engine restarted, a learner rank named as hung).

Each is printed where it happens. In an actor that goes to <run>/rlsys.log (rlsys/runtime/quiet_console.py),
so the rollout manager also keeps them until the controller takes them with a step and prints them on
the console (rlsys/rollout/manager.py): a user sees the line whichever process found the fault.
"""

from __future__ import annotations

import threading
from collections import deque

_kept: deque[str] = deque(maxlen=1000)  # since the last take; the oldest go first if nobody takes them
_lock = threading.Lock()


def notice(message: str) -> None:
    print(f"[rlsys] {message}", flush=True)
    with _lock:
        _kept.append(message)


def take() -> list[str]:
    """The notices of this process since the last take."""
    with _lock:
        out = list(_kept)
        _kept.clear()
    return out
