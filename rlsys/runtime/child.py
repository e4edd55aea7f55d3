"""Long-lived helper processes (the verifiers' scorers, the environments' tool processes): `python -m
MODULE FD` in a session of its own, talking to its parent over a socket pair, and killed together with
every process it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection


def start_child(module: str) -> tuple[subprocess.Popen, Connection]:
    """The child (its main reads Connection(int(sys.argv[1]))) and the parent's end of the socket."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([sys.executable, "-m", module, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                            start_new_session=True)
    theirs.close()
    return proc, Connection(ours.detach())


def kill_child(proc: subprocess.Popen, conn: Connection) -> None:
    """SIGKILL the child's process group, reap the child, close the socket."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    conn.close()
