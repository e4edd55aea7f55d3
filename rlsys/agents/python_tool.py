"""Built-in code tool: the model runs Python in the verifier's sandbox (rlsys/verify/sandbox.py) and reads
its output. A turn that writes <python>code</python> gets <out>stdout</out> back (or the sandbox's reason:
timeout, memory limit, a runtime error's last line); a turn without one is the answer and ends the episode.
Rows opt in with `env: python`; their data_source's verifier scores the final answer."""

from __future__ import annotations

import re

from rlsys.agents.env import Environment, Step, register_env

CALL = re.compile(r"<python>(.*?)</python>", re.S)
LIMITS = dict(wall_s=5.0, memory_mb=512, output_bytes=1 << 16)  # per call: a tool, not a judge


@register_env("python")
class PythonTool(Environment):
    stop = ("</python>",)

    def step(self, state, action: str) -> Step:
        from rlsys.verify.sandbox import Limits, run_python

        calls = CALL.findall(action)
        if not calls:
            return Step(done=True)
        result = run_python(calls[-1], limits=Limits(**LIMITS))
        text = result.stdout if result.ok else f"{result.reason}\n{result.stderr.strip().splitlines()[-1:] or ''}"
        return Step(observation=f"<out>{text.strip()}</out>", tool_calls=1, info={"tool_ok": result.ok})
