"""How a run ends on a signal: Ctrl-C (SIGINT) and SIGTERM (a scheduler's preemption, `kubectl delete`
of the pod, `ray job stop`) both end it as an interrupt: the summary says so, the actors and the local
Ray are released, and `trainer.resume=auto` goes on from the last checkpoint (rlsys/loop/controller.py)."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled as Ctrl-C is, reported as terminated (exit status 143)."""


_received = threading.Event()  # SIGTERM arrived (raised, and raised again by raise_if_terminated)


def _raise_terminated(signum, frame):
    _received.set()
    raise Terminated()


def raise_if_terminated() -> None:
    """Raise Terminated if SIGTERM arrived: the handler's own raise is lost when it lands in code that
    swallows exceptions (a __del__, a weakref callback), so the controller also asks between steps."""
    if _received.is_set():
        raise Terminated()


_active = threading.Event()  # inside sigterm_interrupts


@contextmanager
def sigterm_interrupts():
    """While inside, SIGTERM raises Terminated in the main thread (Python's default would end the process
    at once, leaving no summary and, on a joined cluster, the run's actors)."""
    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    _active.set()
    _received.clear()
    try:
        yield
    finally:
        _active.clear()
        signal.signal(signal.SIGTERM, previous)


def keep_sigterm_handler() -> None:
    """Put Terminated back after a library replaced the handler (ray.init installs one that exits at once)."""
    if _active.is_set() and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


@contextmanager
def signals_kill():
    """A second Ctrl-C or SIGTERM ends the process at once (their default actions) while the run writes its
    summary and releases its actors: it must neither wait on a stuck release nor cut it short to wait
    elsewhere. Ray's processes die with this one (they are tied to it). An ignored signal stays ignored (a
    shell starts a `&` or nohup command ignoring SIGINT: a terminal's Ctrl-C is not meant for it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
