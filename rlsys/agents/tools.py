"""Tool processes: where environments' reset and step run, each call with a timeout.

An environment is user code that may call anything (a sandbox, an HTTP API, a solver that spins), and a
thread cannot be stopped. So a rollout engine keeps a few long-lived child processes (rollout.agent.
tool_workers) and sends each environment call to an idle one over a socket. A call that does not answer
within rollout.agent.tool_timeout_s has its process (and the process group it started) killed and
replaced; one that raises comes back as the error's text. Either way only that episode ends (status
tool_error). An observation longer than the cap is cut in the child, so a tool that returns a gigabyte
never crosses the socket. Run as `python -m rlsys.agents.tools FD`.
"""

from __future__ import annotations

import asyncio
import math
import sys
from multiprocessing.connection import Connection

from rlsys.runtime.child import kill_child, start_child

START_TIMEOUT_S = 60.0  # a tool process must import the environments within this


class ToolError(RuntimeError):
    """An environment call failed: it raised, its process died, or it went past its timeout."""

    def __init__(self, message: str, timeout: bool = False, fatal: bool = True):
        super().__init__(message)
        self.timeout = timeout  # it went past rollout.agent.tool_timeout_s
        self.fatal = fatal  # its process is gone or stuck: it must be replaced


class ToolProcess:
    """Parent side of one child; one call at a time (the pool hands it to one caller)."""

    def __init__(self, modules: list[str], max_chars: int):
        self.proc, self.conn = start_child("rlsys.agents.tools")
        self.conn.send((list(modules), max_chars))
        self.ready = False

    def call(self, env: str, method: str, args: tuple, timeout: float):
        """env.method(*args) in the child: its result, or ToolError."""
        try:
            if not self.ready:
                msg = self.conn.recv() if self.conn.poll(START_TIMEOUT_S) else "no answer"
                if msg != "ready":
                    raise ToolError(f"tool process did not start: {msg}")
                self.ready = True
            self.conn.send((env, method, args))
            if not self.conn.poll(timeout):
                raise ToolError(f"environment {env!r} {method} took longer than rollout.agent.tool_timeout_s="
                                f"{timeout:g} s: its tool process was killed", timeout=True)
            kind, value = self.conn.recv()
        except (EOFError, OSError) as e:
            raise ToolError(f"environment {env!r} {method}: its tool process died ({type(e).__name__})") from None
        if kind == "error":
            raise ToolError(f"environment {env!r} {method} raised {value}", fatal=False)
        return value

    def close(self) -> None:
        kill_child(self.proc, self.conn)


class ToolPool:
    """`workers` tool processes shared by the engine's episodes (async: a call waits for an idle one)."""

    def __init__(self, modules: list[str], workers: int, max_chars: int):
        self.modules, self.max_chars = list(modules), max_chars
        self.procs = [ToolProcess(self.modules, max_chars) for _ in range(workers)]
        self.idle: asyncio.Queue | None = None

    async def call(self, env: str, method: str, args: tuple, timeout: float):
        if self.idle is None:  # made in the caller's event loop
            self.idle = asyncio.Queue()
            for p in self.procs:
                self.idle.put_nowait(p)
        proc = await self.idle.get()
        try:
            return await asyncio.to_thread(proc.call, env, method, args, timeout)
        except ToolError as e:
            if e.fatal:  # timed out or died: a fresh process takes its place
                self.procs.remove(proc)
                proc.close()
                proc = ToolProcess(self.modules, self.max_chars)
                self.procs.append(proc)
            raise
        finally:
            self.idle.put_nowait(proc)

    def close(self) -> None:
        for p in self.procs:
            p.close()


def _serve(conn: Connection) -> None:
    from rlsys.agents.env import ENVS, KEEP, Step
    from rlsys.agents.modules import load_env_modules

    modules, max_chars = conn.recv()
    try:
        load_env_modules(modules)
    except Exception as e:
        conn.send(f"{type(e).__name__}: {e}")
        return
    conn.send("ready")
    while True:
        try:
            env, method, args = conn.recv()
        except (EOFError, OSError):  # the engine is gone
            return
        try:
            if method == "reset":
                value = ENVS[env].reset(*args)
            else:
                state = args[0]
                value = ENVS[env].step(*args)
                if not isinstance(value, Step):
                    raise TypeError(f"step returned {type(value).__name__}, not rlsys.agents.Step")
                value.state = state if value.state is KEEP else value.state
                if value.reward is not None and not math.isfinite(float(value.reward)):
                    raise ValueError(f"Step.reward must be a finite number, got {value.reward!r}")
                obs = value.observation
                if obs is not None and not isinstance(obs, str):
                    raise TypeError(f"Step.observation must be text, got {type(obs).__name__}")
                if obs is not None and len(obs) > max_chars:  # a huge output stops here, not in the engine
                    value.info = {**value.info, "observation_chars": len(obs)}
                    value.observation = obs[:max_chars]
            conn.send(("ok", value))
        except Exception as e:
            conn.send(("error", f"{type(e).__name__}: {e}"[:2000]))


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
