"""Code verifier: the response's Python program run against the row's tests in the sandbox.

The ground truth carries the tests, in one of two forms:
  * stdin/stdout cases, as JSON: {"tests": [{"input": "1 2\\n", "output": "3\\n"}, ...]}, a bare
    list of such cases, or {"inputs": [...], "outputs": [...]};
  * Python test code (anything that is not JSON), e.g. "assert add(1, 2) == 3": judged (see
    judge.py): the tests run in a process of their own that calls into the program's process and
    gets plain values back; a row passes only when the judge reports every test run to its end
    (with this run's secret) and the program was still serving at the end. The exit status of
    the program counts for nothing.
Reward 1 when every test passes, else 0. All tests of a sample run in one sandbox (its start-up
paid once), in order, stopping at the first failure, within verifier.timeout_s together. Outputs
compare line by line with trailing whitespace ignored, in the verifier: the expected output never
enters the sandbox. Details list the tests that ran and the evidence that made them count.
"""

from __future__ import annotations

import ast
import json
import re
import secrets
import signal
from dataclasses import dataclass

from rlsys.verify.registry import register_verifier, settings
from rlsys.verify.judge_steps import Step, judge_steps, test_steps
from rlsys.verify.sandbox import JudgedRun, Limits, run_cases, run_judged

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_OPEN_FENCE = re.compile(r"```[ \t]*(?:python3?|py)\b[^\n]*\n(.*)\Z", re.DOTALL | re.IGNORECASE)


@dataclass
class Tests:
    cases: list[tuple[str, str]]  # (stdin, expected stdout)
    code: str | None = None  # Python test code appended to the program


def extract_program(response: str) -> str:
    """The last ```python block that parses (with the blocks before it when it only calls what they
    define: an example of use); else the last unlabelled block that is a program (not
    output such as `3` or `[1, 2]`, which also parses as Python); with no closed block, the rest of
    a ```python block the token limit cut off, else the whole response."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(response)]
    labelled = [body for lang, body in blocks if lang in ("python", "py", "python3")]
    code = [(body, tree) for body in labelled if (tree := _tree(body)) is not None]  # a >>> session does not parse
    if code and (_defines(code[-1][1]) or not any(_defines(tree) for _, tree in code[:-1])):
        return code[-1][0]
    if code:  # the last block defines nothing, earlier ones do (it is an example call): the blocks together
        return "\n".join(body for body, _ in code)
    if labelled:
        return labelled[-1]
    for lang, body in reversed(blocks):
        if lang == "" and _is_program(_tree(body)):
            return body
    if not blocks:  # a block cut off by the token limit, never closed: what follows its fence
        cut = _OPEN_FENCE.search(response)
        return cut.group(1) if cut else response
    return ""


def _tree(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def _defines(tree: ast.Module) -> bool:
    """Whether a program defines a function or class at top level (a usage example does not)."""
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in tree.body)


def _is_program(tree: ast.Module | None) -> bool:
    """Whether a block that parses is a program, not output such as `4` or `[1, 2]`."""
    return tree is not None and any(not isinstance(n, ast.Expr) or any(isinstance(c, ast.Call) for c in ast.walk(n))
                                    for n in tree.body)


def parse_tests(ground_truth: str) -> Tests:
    """Tests from a ground truth; ValueError names what is wrong."""
    text = ground_truth.strip()
    if not text:
        raise ValueError("empty tests")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError:
        compile(text, "<tests>", "exec")  # SyntaxError is a ValueError: bad test code fails at load
        if not any(step.is_test for step in test_steps(text)):
            raise ValueError("test code has no tests: no top-level assert or call, and no test_* function") from None
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


OBJECT_NOTE = ("an object of the program's own class equals only itself in the judge, and operators on it are "
               "not run (its __eq__ could lie): compare its fields or values (docs/verifiers.md, 'Limits')")
IO_EVIDENCE = "stdout compared with the expected output by the verifier, outside the sandbox (it never entered it)"


@register_verifier("code", check=parse_tests)
def code_execution(response: str, ground_truth: str) -> tuple[float, dict]:
    tests = parse_tests(ground_truth)
    program = extract_program(response)
    if not program.strip():
        return 0.0, {"parsed": None, "reason": "no Python program in response"}
    cfg = settings()
    limits = Limits(wall_s=cfg.timeout_s, memory_mb=cfg.memory_mb, output_bytes=cfg.max_output_kb * 1024,
                    max_processes=cfg.max_processes)
    if tests.code is not None:
        return judge_test_code(program, tests.code, limits)
    return run_io_cases(program, tests.cases, limits)


def run_io_cases(program: str, cases: list[tuple[str, str]], limits: Limits) -> tuple[float, dict]:
    runs = run_cases(program, [i for i, _ in cases], limits)  # only the inputs go in
    info = {"parsed": program[:2000], "total": len(cases), "tests": [], "evidence": IO_EVIDENCE}
    for k, (r, (_, want)) in enumerate(zip(runs, cases)):
        if not r.ok or not _same_output(r.stdout, want):
            why = r.reason if not r.ok else "wrong output"
            info["tests"].append({"test": f"case {k + 1}", "result": f"failed: {why}"})
            out = {**info, "passed": k, "reason": f"test {k + 1}/{len(cases)}: {why}", "stderr": r.stderr[-500:]}
            if r.ok:
                out["stdout"] = r.stdout[:500]
            if r.reason.startswith("timeout"):
                out["timeout"] = True
            return 0.0, out
        info["tests"].append({"test": f"case {k + 1}", "result": "passed"})
    return 1.0, {**info, "passed": len(cases), "reason": f"passed {len(cases)}/{len(cases)} tests"}


def judge_test_code(program: str, code: str, limits: Limits) -> tuple[float, dict]:
    """Reward 1 only on the judge's complete report: every test passed, the end line carries this
    run's secret, the program answered at least once and was still serving at the end."""
    steps = judge_steps(code)  # the verifier's own parse decides what counts as a test
    nonce = secrets.token_hex(16)
    run = run_judged(program, json.dumps({"nonce": nonce, "code": code}), limits)
    records, end = _read_report(run.report, nonce, len(steps))
    stop = next((r["step"] for r in records if "exit" in r), len(steps))  # the test code's own sys.exit(0)
    steps = steps[:stop + 1]  # what comes after an exit(0) never runs, as in Python
    total = sum(s.is_test for s in steps)
    passed = sum(1 for r in records if r["ok"] and steps[r["step"]].is_test)
    info = {"parsed": program[:2000], "total": total, "passed": passed,
            "tests": [_shown(steps[r["step"]], r) for r in records if steps[r["step"]].is_test or not r["ok"]]}
    reason = _failure(run, records, end, steps, limits)
    if reason:
        out = {**info, "reason": reason, "stderr": run.program.stderr[-500:]}
        if end is None:
            out["judge_log"] = run.judge.stderr[-500:]
        if run.timed_out:
            out["timeout"] = True
        return 0.0, out
    info["evidence"] = (f"all {total} tests ran to their end in the judge, a process that never runs "
                        f"the program; the program answered {end['answers']} requests with serialised values; "
                        "the judge's report ends with this run's secret; the program was still serving at the end")
    return 1.0, {**info, "reason": f"passed {total}/{total} tests"}


def _read_report(text: str, nonce: str, n_steps: int) -> tuple[list[dict], dict | None]:
    """Step records in order (0, 1, 2, ...) and the end line if it carries the nonce."""
    records, end = [], None
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("step") == len(records) < n_steps:
            records.append(rec)
        elif isinstance(rec, dict) and rec.get("end") == nonce:
            end = rec
    return records, end


def _failure(run: JudgedRun, records: list[dict], end: dict | None, steps: list[Step], limits: Limits) -> str | None:
    """Why the row fails, or None: the first failing step, a timeout, a judge that did not finish,
    missing tests, tests that never used the program, a program that was gone by the end."""
    tests = [k for k, s in enumerate(steps) if s.is_test]
    n_ok = sum(1 for r in records if r["ok"] and steps[r["step"]].is_test)
    bad = next((r for r in records if not r["ok"]), None)
    if bad is not None:
        step = steps[bad["step"]]
        where = f"test {n_ok + 1}/{len(tests)} (line {step.line})" if step.is_test else \
            "before the tests" if step.line == 0 else f"test set-up (line {step.line})"
        error = str(bad.get("error", "?"))
        if error.startswith("the program"):
            error += f" ({_program_end(run)})"
        return f"{where} failed: {error}"
    if run.timed_out:
        nxt = f"; running: {steps[len(records)].src.splitlines()[0][:120]}" if len(records) < len(steps) else ""
        return f"timeout: still running after {limits.wall_s:.1f}s ({n_ok}/{len(tests)} tests passed{nxt})"
    if end is None:
        return f"the tests did not finish: the judge process ended with {run.judge.reason}"
    if n_ok != len(tests) or len(records) != len(steps):
        return f"only {n_ok}/{len(tests)} tests ran"
    if not tests:
        return f"the test code ended (sys.exit(0), line {steps[-1].line}) before any test ran"
    used = sum(r["answers"] for r in records if steps[r["step"]].is_test) + records[0].get("values", 0)
    if not used:  # names looked up for the tests do not count: a test must call or compare something of it
        return "the tests never used the program (no test called it or compared a value of it)"
    if not end.get("acked"):
        return f"the program was gone before the tests ended: {end.get('gone') or 'no answer to the end'} ({_program_end(run)})"
    return None


def _program_end(run: JudgedRun) -> str:
    rc, why = run.program.returncode, run.program.reason
    if rc is None:
        return "still running"
    if "memory limit" in why or "output limit" in why:
        return why
    if rc > 128 and rc - 128 in signal.Signals._value2member_map_:
        sig = signal.Signals(rc - 128)
        return f"killed by {sig.name}" + (" (its own kill or the CPU time limit)" if sig.name in ("SIGKILL", "SIGXCPU") else "")
    return f"exit status {rc}" + (f", {why}" if why.startswith("runtime") else "")


def _shown(step: Step, rec: dict) -> dict:
    out = {"test": step.src.splitlines()[0][:160], "line": step.line,
           "result": "passed" if rec["ok"] else f"failed: {rec.get('error', '?')}",
           "program_answers": rec.get("answers", 0)}
    if rec.get("log"):
        out["answers"] = rec["log"]
        if not rec["ok"] and any("object of the program>" in line for line in rec["log"]):
            out["note"] = OBJECT_NOTE
    return out
