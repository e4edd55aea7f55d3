"""What the judge runs of a row's test code, and in which order (see judge.py).

Stdlib only: sent into the sandbox after judge_wire.py; the verifier imports it too, so both sides
count the same tests. A *step* is a top-level statement (the bodies of `if __name__ == "__main__":`
count as top level: the judge runs the tests as __main__). A *test* is a step that asserts or
calls something, a test_* function nobody calls (pytest style), a test* method of a
unittest.TestCase class or a test_* method of a pytest Test* class; imports, definitions, plain
assignments and `sys.exit(...)` are set-up. Test runners (`unittest.main()`, `pytest.main()`,
`TextTestRunner().run(...)`, `doctest.testmod()`) are not run: the judge runs every test itself and
sees each failure, where a runner would report it somewhere the judge never reads.
"""

import ast
import builtins
import sys

_RUNNERS = (["unittest", "main"], ["pytest", "main"], ["doctest", "testmod"])
_EXITS = {"exit", "quit", "_exit"}
_CASE_BASES = {"TestCase", "IsolatedAsyncioTestCase"}


class Step:
    """One thing the judge runs. node: an AST statement, a list of program names (step 0), or
    ("function", name) / ("unittest", class, method) / ("pytest", class, method)."""

    def __init__(self, line, src, is_test, node):
        self.line, self.src, self.is_test, self.node = line, src, is_test, node


def top_level(tree):
    """Top-level statements, with the bodies of `if __name__ == "__main__":` spliced in."""
    out = []
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_check(node.test) and not node.orelse:
            out += top_level(ast.Module(node.body, []))
        else:
            out.append(node)
    return out


def test_steps(code):
    """Steps of the test code, in the order the judge runs them; SyntaxError if it does not parse."""
    tree = ast.parse(code)
    body = [n for n in top_level(tree) if not _is_runner(n)]
    steps, used = [], set()
    for node in body:
        setup = isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        is_test = not setup and not _is_exit(node) and any(isinstance(n, (ast.Assert, ast.Call)) for n in ast.walk(node))
        src = ast.get_source_segment(code, node) or ast.unparse(node)
        steps.append(Step(node.lineno, src, is_test, node))
        if not setup:
            used |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    cases = _case_aliases(tree)
    for node in body:  # functions and methods a test runner would collect, which the judge calls itself
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test") and node.name not in used:
            steps.append(Step(node.lineno, f"{node.name}()", True, ("function", node.name)))
        elif isinstance(node, ast.ClassDef):
            kind = "unittest" if any(_base_name(b) in _CASE_BASES | cases for b in node.bases) else \
                "pytest" if node.name.startswith("Test") else None
            if kind == "unittest":
                cases.add(node.name)
            prefix = "test" if kind == "unittest" else "test_"
            methods = sorted((m.name, m.lineno) for m in node.body if kind and
                             isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name.startswith(prefix))
            steps += [Step(line, f"{node.name}.{name}", True, (kind, node.name, name)) for name, line in methods]
    return steps


def program_names(code):
    """(names the test code uses but never binds, minus builtins and standard-library modules: the
    program must provide them; the builtins and standard-library module names it uses: the
    program's own definitions of those win, as in one Python process, else the judge's own)."""
    tree = ast.parse(code)
    used, bound = set(), set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name):
            (used if isinstance(n.ctx, ast.Load) else bound).add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(n.name)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in n.names if a.name != "*"}
        elif isinstance(n, ast.ExceptHandler) and n.name:
            bound.add(n.name)
        elif isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name:
            bound.add(n.name)
    free = {n for n in used - bound if not (n.startswith("__") and n.endswith("__"))}
    standard = free & (set(dir(builtins)) | set(getattr(sys, "stdlib_module_names", ())))
    return sorted(free - standard), sorted(standard)


def judge_steps(code):
    """What the judge runs, in order: step 0 takes the program's names (when the tests use any),
    then test_steps(). The verifier maps the report's step numbers back onto this list."""
    theirs, standard = program_names(code)
    head = [Step(0, f"(the program's {', '.join(theirs)})", False, theirs + standard)] if theirs or standard else []
    return head + test_steps(code)


def _is_main_check(test):
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
            and isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value == "__main__")


def _dotted(func):
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return list(reversed(parts))


def _is_runner(node):
    """A statement that hands the tests to a runner (`unittest.main()`, `pytest.main([...])`,
    `doctest.testmod()`, `unittest.TextTestRunner(...).run(suite)`)."""
    if not isinstance(node, (ast.Expr, ast.Assign, ast.AnnAssign)):
        return False
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        name = _dotted(call.func)
        if name[-2:] in _RUNNERS or name == ["testmod"]:
            return True
        if name[-1:] == ["run"] and any(isinstance(n, ast.Call) and _dotted(n.func)[-1:] == ["TextTestRunner"]
                                        for n in ast.walk(call.func)):
            return True
    return False


def _is_exit(node):
    """`sys.exit(...)`, `exit()`, `quit()`, `os._exit(...)` as a statement: ends the tests, tests nothing."""
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return False
    name = _dotted(node.value.func)
    runs_something = any(isinstance(n, ast.Call) for a in node.value.args for n in ast.walk(a))  # sys.exit(main())
    return bool(name) and name[-1] in _EXITS and (len(name) == 1 or name[0] in ("sys", "os")) and not runs_something


def _case_aliases(tree):
    """Other names of unittest.TestCase in the test code (`TC = unittest.TestCase`, `import ... as TC`)."""
    names = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign) and (_dotted(n.value) or [""])[-1] in _CASE_BASES:
            names |= {t.id for t in n.targets if isinstance(t, ast.Name)}
        elif isinstance(n, ast.ImportFrom) and n.module == "unittest":
            names |= {a.asname for a in n.names if a.asname and a.name in _CASE_BASES}
    return names


def _base_name(base):
    name = _dotted(base)
    return name[-1] if name else ""
