"""Scorer processes: where verifiers actually run, so every verifier has a hard per-sample timeout.

A verifier is arbitrary Python (sympy can spin for minutes; a remote call can hang), and a thread
cannot be stopped. So samples are sent to a long-lived child process over a socket (a few at a
time, answered one by one, to save round trips); if a sample's answer does not come within verifier.timeout_s (+ a grace for the code sandbox's own clean-up), the child
is killed and a fresh one started: the sample gets reward 0 with a timeout, the pool keeps serving.
In the child, verifiers run on the main thread (math-verify's signal code is happy there).
Run as `python -m rlsys.verify.scorer FD`.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from multiprocessing.connection import Connection

from rlsys.config import VerifierConfig
from rlsys.runtime.child import kill_child, start_child
from rlsys.verify.details import VerifierDetails

GRACE_S = 2.0  # beyond verifier.timeout_s: the code verifier kills and reads back its sandbox in this
START_TIMEOUT_S = 120.0  # a scorer process must import the verifiers within this


def run_verifier(source: str, response: str, ground_truth: str,
                 extra_info: dict | None = None) -> tuple[float, VerifierDetails]:
    """One sample in this process: exceptions and malformed rewards become reward 0 with an error.
    extra_info (a verl row's) goes to verifiers that take it."""
    from rlsys.verify import VERIFIERS
    from rlsys.verify.registry import TAKES_EXTRA_INFO

    t0 = time.perf_counter()
    try:
        fn = VERIFIERS[source]
        kwargs = {"extra_info": extra_info} if source in TAKES_EXTRA_INFO else {}
        reward, details = fn(response, ground_truth, **kwargs)
        reward = float(reward)
        if not math.isfinite(reward):
            raise ValueError(f"verifier returned a non-finite reward {reward!r}")
        details = VerifierDetails.from_dict(details)
    except Exception as e:  # a verifier bug must not take the run down, nor pass for a wrong answer
        reward, details = 0.0, VerifierDetails(reason="verifier error", error=f"{type(e).__name__}: {e}"[:1000])
    details.seconds = round(time.perf_counter() - t0, 6)
    return reward, details


class ScorerProcess:
    """Parent side of one child process; not thread-safe (the worker hands each to one thread)."""

    def __init__(self, cfg: VerifierConfig):
        self.cfg = cfg
        self.proc, self.conn = start_child("rlsys.verify.scorer")
        self.conn.send(cfg)
        self.ready = False

    def wait_ready(self) -> None:
        if not self.ready:
            msg = self.conn.recv() if self.conn.poll(START_TIMEOUT_S) else "no answer"
            if msg != "ready":
                raise RuntimeError(f"verifier scorer process did not start: {msg}")
            self.ready = True

    def submit(self, items: list[tuple[str, str, str, dict | None]]) -> None:
        """Send (data_source, response, ground_truth, extra_info) samples; results come back one by one, in order."""
        self.wait_ready()
        self.conn.send(items)

    def next_result(self) -> tuple[float, VerifierDetails] | str:
        """The next sample's (reward, details), or "timeout" / "died" (then the process must be replaced)."""
        try:
            if not self.conn.poll(self.cfg.timeout_s + GRACE_S):
                return "timeout"
            return self.conn.recv()
        except (EOFError, OSError):
            return "died"

    def close(self) -> int | None:
        """Kill the process (and its group); its exit code if it had already exited by itself."""
        try:
            code = self.proc.wait(timeout=0.2)  # a crashed process may not be reaped the instant its socket closes
        except subprocess.TimeoutExpired:
            code = None
        kill_child(self.proc, self.conn)
        return code


def main() -> None:
    conn = Connection(int(sys.argv[1]))
    from rlsys.verify import configure

    try:
        configure(conn.recv())
    except Exception as e:  # e.g. a verifier.modules entry that does not import
        conn.send(f"{type(e).__name__}: {e}")
        return
    try:  # pay math-verify's import (sympy, ~1 s) now, not inside the first sample's timeout
        from rlsys.verify.math_answer import math_equivalence

        math_equivalence("\\boxed{1}", "1")
    except Exception:
        pass
    try:  # and the code sandbox's probe (namespaces, jail, its compiled boot: a few processes) likewise
        from rlsys.verify.sandbox import isolation

        isolation()
    except Exception:  # no sandbox here: code samples report it when they come
        pass
    conn.send("ready")
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        for item in msg:  # one answer per sample as soon as it is scored: the parent times each
            conn.send(run_verifier(*item))


if __name__ == "__main__":
    main()
