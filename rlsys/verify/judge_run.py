"""The judge process: runs the row's test code, step by step, against the program (see judge.py).

Stdlib only; sent into the sandbox after judge.py. run_judge reads the test code and this run's
secret, binds the names the tests leave to the program, runs each step of judge_steps() to its end,
and reports one JSON line per step, then an end line with the secret.
"""

import ast
import builtins
import importlib
import importlib.util
import json
import os
import sys
import types

if "Judge" not in globals():  # imported as a module, not sent in after the files it uses
    from rlsys.verify.judge import Judge, ProgramGone, Remote
    from rlsys.verify.judge_program import _safe, _safe_str
    from rlsys.verify.judge_steps import judge_steps
    from rlsys.verify.judge_wire import recv, send


class TestFailed(Exception):
    """A unittest test the judge ran failed (the message is unittest's last line)."""


class _SolutionModule(types.ModuleType):
    """`from solution import f` / `import solution` in test code: the program, as a module."""

    def __init__(self, judge):
        super().__init__("solution")
        self._judge = judge

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        found = self._judge.request({"op": "names", "names": [name]}, name)[0]
        if type(found) is not dict or name not in found:
            raise AttributeError(f"the program does not define {name!r}")
        return found[name]


def run_judge(spec_fd, report_fd, rfd, wfd):
    """The judge process: read {"nonce", "code"} from spec_fd, run every step against the program
    behind (rfd, wfd), report one JSON line per step to report_fd, then the end line."""
    with os.fdopen(spec_fd, "rb") as f:
        spec = json.loads(f.read())
    nonce, code = spec["nonce"], spec["code"]
    report = os.fdopen(report_fd, "w", buffering=1)  # line by line: what ran survives a timeout
    judge = Judge(rfd, wfd)
    ns = {"__name__": "__main__", "__builtins__": builtins}
    sys.modules["solution"] = _SolutionModule(judge)
    if "unittest" in code:
        _watch_unittest(judge)
    if "pytest" in code and importlib.util.find_spec("pytest") is None:
        sys.modules["pytest"] = _pytest_stand_in()
    steps = judge_steps(code)
    wanted = steps[0].node if steps and isinstance(steps[0].node, list) else []  # step 0: the names it asks for
    for name in set(wanted) & set(getattr(sys, "stdlib_module_names", ())):
        try:
            ns[name] = importlib.import_module(name)  # unless the program defines the name (step 0)
        except Exception:
            pass
    for k, step in enumerate(steps):
        judge.log, before = [], judge.answers
        judge.unittest_failure = None
        error, status = _run_step(step, ns, judge)
        if error is None and judge.unittest_failure:  # a runner in the test code ran a test that failed
            error, status = f"a unittest test failed: {judge.unittest_failure}"[:500], None
        rec = {"step": k, "ok": error is None, "answers": judge.answers - before}
        if isinstance(step.node, list):
            rec["values"] = judge.values  # plain values of the program the tests compare (not only call)
        if error is not None:
            rec.update(error=error[:500], log=judge.log)
        if status is not None:
            rec["exit"] = status
        report.write(json.dumps(rec) + "\n")
        if error is not None or status is not None:
            break
    acked = _bye(judge)
    report.write(json.dumps({"end": nonce, "answers": judge.answers, "acked": acked, "gone": judge.gone}) + "\n")
    report.flush()


def _run_step(step, ns, judge):
    """(None, None) when the step ran to its end, (why not, None), or (None, status) when the test
    code itself ended with sys.exit(status). A program that went away fails the step even if test
    code swallowed the error."""
    status = None
    try:
        if isinstance(step.node, list):
            _bind_program_names(step.node, ns, judge)
        elif isinstance(step.node, tuple):
            _run_collected(step.node, ns)
        else:
            exec(compile(ast.Module([step.node], []), "<tests>", "exec", dont_inherit=True), ns)
        error = None
    except (ProgramGone, TestFailed) as e:
        error = str(e)
    except AssertionError as e:
        error = "AssertionError" + (f": {_safe_str(e)}" if _safe_str(e) else "")
    except SystemExit as e:  # the test code's own exit (the program's arrives as ProgramGone)
        code = 0 if e.code is None else e.code
        error, status = (None, 0) if code == 0 else (f"the test code exited with status {code!r}", None)
    except BaseException as e:  # noqa: B036 - test code that raises anything fails its step
        error = f"{type(e).__name__}: {_safe_str(e)}"
    return (judge.gone, None) if judge.gone else (error, status)


def _bind_program_names(wanted, ns, judge):
    found = judge.request({"op": "names", "names": wanted}, "names")[0]
    if type(found) is not dict:
        judge.caught("the program sent a malformed answer")
    for name, value in found.items():
        if name in wanted:
            if isinstance(value, Remote):
                object.__setattr__(value, "_label", name)
            judge.values += not isinstance(value, (Remote, type, types.ModuleType, types.BuiltinFunctionType))
            ns[name] = value


def _run_collected(node, ns):
    """A test function or method the test code leaves to a runner (judge_steps.test_steps)."""
    kind, name = node[0], node[1]
    if kind == "function":
        return _call_test(ns.get(name), name)
    if kind == "pytest":
        obj = ns[name]()
        for hook in ("setup_method", node[2], "teardown_method"):
            if hasattr(obj, hook):
                if hook == node[2]:
                    _call_test(getattr(obj, hook), f"{name}.{hook}")
                else:
                    getattr(obj, hook)(getattr(obj, node[2]))
        return None
    import unittest
    result = unittest.TestResult()
    unittest.TestSuite([ns[name](node[2])]).run(result)
    for _, trace in result.errors + result.failures:
        raise TestFailed(trace.strip().splitlines()[-1][:500])
    if result.unexpectedSuccesses:
        raise TestFailed("unexpected success of a test marked expectedFailure")
    return None


def _call_test(fn, name):
    """A pytest-style test: once, or once per mark.parametrize case; a pytest.skip() inside passes."""
    cases = getattr(fn, "_rlsys_cases", None)
    if cases is None and getattr(getattr(fn, "__code__", None), "co_argcount", 0) > hasattr(fn, "__self__"):
        raise TypeError(f"{name}() takes arguments (pytest fixtures are not supported)")
    for kw in cases or [{}]:
        try:
            fn(**kw)
        except _Skipped:
            pass


class _Skipped(BaseException):
    """pytest.skip() in a test (the stand-in's)."""


def _pytest_stand_in():
    """`import pytest` where the sandbox's interpreter has no pytest: raises, approx, fail, skip,
    param and mark.parametrize with pytest's meaning (no fixtures; other marks change nothing)."""
    import itertools
    import re

    pytest = types.ModuleType("pytest")

    class Raises:
        def __init__(self, expected, match):
            self.expected, self.pattern, self.value, self.type = expected, match, None, None

        def __enter__(self):
            return self

        def __exit__(self, tp, value, tb):
            if tp is None:
                raise AssertionError(f"DID NOT RAISE {self.expected}")
            if not issubclass(tp, self.expected):
                return False
            self.value, self.type = value, tp
            if self.pattern is not None:
                self.match(self.pattern)
            return True

        def match(self, pattern):
            assert re.search(pattern, str(self.value)), f"Regex pattern {pattern!r} did not match {str(self.value)!r}"
            return True

    def raises(expected, *args, match=None, **kw):
        ctx = Raises(expected, match)
        if not args:
            return ctx
        with ctx:
            args[0](*args[1:], **kw)
        return ctx

    class Approx:
        def __init__(self, expected, rel=None, abs=None):
            self.expected, self.rel, self.abs = expected, rel, abs

        def __eq__(self, actual):
            return _close(actual, self.expected, self.rel, self.abs)

        __hash__ = None

        def __repr__(self):
            return f"approx({self.expected!r})"

    def _close(a, e, rel, tol):
        if isinstance(e, dict):
            return isinstance(a, dict) and a.keys() == e.keys() and all(_close(a[k], e[k], rel, tol) for k in e)
        if isinstance(e, (list, tuple)):
            return isinstance(a, (list, tuple)) and len(a) == len(e) and all(_close(x, y, rel, tol) for x, y in zip(a, e))
        numbers = (int, float, complex)
        if not isinstance(e, numbers) or isinstance(e, bool) or not isinstance(a, numbers) or isinstance(a, bool):
            return a == e
        if a == e:
            return True
        if e in (float("inf"), float("-inf")) or e != e:
            return False  # inf only equals itself; nan never (no nan_ok)
        rel = (0.0 if tol is not None else 1e-6) if rel is None else rel
        return builtins.abs(a - e) <= max(rel * builtins.abs(e), 1e-12 if tol is None else tol)

    class Mark:
        def parametrize(self, names, values, **_):
            names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
            rows = [tuple(getattr(v, "values", v)) if len(names) > 1 else tuple(getattr(v, "values", (v,))) for v in values]

            def mark(fn):
                new = [dict(zip(names, row)) for row in rows]
                old = getattr(fn, "_rlsys_cases", [{}])
                fn._rlsys_cases = [{**a, **b} for a, b in itertools.product(old, new)]
                return fn
            return mark

        def __getattr__(self, name):  # skip, xfail, slow, timeout ...: usable as decorators, no effect
            return lambda *a, **k: a[0] if len(a) == 1 and callable(a[0]) and not k else (lambda fn: fn)

    def fail(msg=""):
        raise AssertionError(msg)

    def skip(msg=""):
        raise _Skipped(msg)

    pytest.raises, pytest.approx, pytest.fail, pytest.skip, pytest.mark = raises, Approx, fail, skip, Mark()
    pytest.param = lambda *values, **_: types.SimpleNamespace(values=values)
    pytest.fixture = lambda *a, **k: a[0] if len(a) == 1 and callable(a[0]) else (lambda fn: fn)
    return pytest


def _watch_unittest(judge):
    """Every failure unittest records, under any runner the test code uses (TextTestRunner, a suite,
    unittest.main(exit=False) ...), fails the step that ran it: a runner only prints it."""
    import traceback
    import unittest

    def watch(name):
        original = getattr(unittest.TestResult, name)

        def recorded(self, test, *rest):
            err = rest[-1] if rest else None
            if name != "addSubTest" or err is not None:
                why = traceback.format_exception_only(err[0], err[1])[-1].strip() if err else "unexpected success"
                judge.unittest_failure = judge.unittest_failure or f"{_safe(lambda: str(test), '?')}: {why}"
            return original(self, test, *rest)

        setattr(unittest.TestResult, name, recorded)

    for name in ("addError", "addFailure", "addUnexpectedSuccess", "addSubTest"):
        watch(name)


def _bye(judge):
    """Whether the program was still serving when the tests ended (no early exit of any kind)."""
    if judge.gone:
        return False
    try:
        send(judge.wfd, {"op": "bye"})
        return recv(judge.rfd) == {"bye": True}
    except (OSError, ValueError):
        return False
