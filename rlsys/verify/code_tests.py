"""Code verifier: the response's Python program run against the row's tests in the sandbox.

The ground truth carries the tests, in one of two forms:
  * stdin/stdout cases, as JSON: {"tests": [{"input": "1 2\\n", "output": "3\\n"}, ...]}, a bare
    list of such cases, or {"inputs": [...], "outputs": [...]};
  * Python test code (anything that is not JSON), run after the program: it passes if the
    process exits 0, e.g. "assert add(1, 2) == 3".
Reward 1 when every test passes, else 0. All tests of a sample run in one sandbox (its start-up
paid once), in order, stopping at the first failing run, within verifier.timeout_s together. Outputs compare line by line with trailing whitespace ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from rlsys.verify import register_verifier, settings
from rlsys.verify.sandbox import Limits, run_cases

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


@dataclass
class Tests:
    cases: list[tuple[str, str]]  # (stdin, expected stdout)
    code: str | None = None  # Python test code appended to the program


def extract_program(response: str) -> str:
    """The last ```python (or unlabelled) fenced block; the whole response if it has none."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(response)]
    for lang, body in reversed(blocks):
        if lang in ("python", "py", "python3", ""):
            return body
    return response if not blocks else ""


def parse_tests(ground_truth: str) -> Tests:
    """Tests from a ground truth; ValueError names what is wrong."""
    text = ground_truth.strip()
    if not text:
        raise ValueError("empty tests")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError:
        compile(text, "<tests>", "exec")  # SyntaxError is a ValueError: bad test code fails at load
        return Tests([], code=text)
    if isinstance(spec, dict) and "inputs" in spec:
        if not isinstance(spec.get("outputs"), list) or len(spec["outputs"]) != len(spec["inputs"]):
            raise ValueError("'inputs' and 'outputs' must be lists of the same length")
        spec = [{"input": i, "output": o} for i, o in zip(spec["inputs"], spec["outputs"])]
    elif isinstance(spec, dict) and "tests" in spec:
        spec = spec["tests"]
    if not isinstance(spec, list) or not spec:
        raise ValueError("JSON tests must be a non-empty list of {'input', 'output'} cases "
                         "(or {'tests': [...]}, or {'inputs': [...], 'outputs': [...]})")
    cases = []
    for k, case in enumerate(spec):
        if not isinstance(case, dict) or "output" not in case:
            raise ValueError(f"test case {k} must be an object with 'input' and 'output'")
        cases.append((_text(case.get("input", "")), _text(case["output"])))
    return Tests(cases)


def _text(x) -> str:
    return x if isinstance(x, str) else "\n".join(map(str, x)) if isinstance(x, list) else str(x)


def _same_output(got: str, want: str) -> bool:
    def norm(s: str) -> list[str]:
        return [line.rstrip() for line in s.rstrip().splitlines()]

    return norm(got) == norm(want)


@register_verifier("code", check=parse_tests)
def code_execution(response: str, ground_truth: str) -> tuple[float, dict]:
    tests = parse_tests(ground_truth)
    program = extract_program(response)
    if not program.strip():
        return 0.0, {"parsed": None, "reason": "no Python program in response"}
    cfg = settings()
    if tests.code is not None:
        source, stdins, wants = program + "\n\n" + tests.code, [""], [None]
    else:
        source, stdins, wants = program, [i for i, _ in tests.cases], [o for _, o in tests.cases]
    info = {"parsed": program[:2000], "total": len(stdins)}
    limits = Limits(wall_s=cfg.timeout_s, memory_mb=cfg.memory_mb, output_bytes=cfg.max_output_kb * 1024,
                    max_processes=cfg.max_processes)
    runs = run_cases(source, stdins, limits)
    for k, (r, want) in enumerate(zip(runs, wants)):
        if not r.ok or (want is not None and not _same_output(r.stdout, want)):
            out = {**info, "passed": k, "reason": f"test {k + 1}/{len(stdins)}: {r.reason if not r.ok else 'wrong output'}",
                   "stderr": r.stderr[-500:]}
            if r.ok:
                out["stdout"] = r.stdout[:500]
            if r.reason.startswith("timeout"):
                out["timeout"] = True
            return 0.0, out
    return 1.0, {**info, "passed": len(stdins), "reason": f"passed {len(stdins)}/{len(stdins)} tests"}
