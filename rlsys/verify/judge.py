"""Test code judged outside the program: the program answers calls, a separate process runs the tests.

Stdlib only. Sent into the sandbox as judge_wire.py + this file + sandbox_boot.py (the sandbox
cannot import rlsys); the verifier imports it for test_steps(). Two sibling processes run in one
sandbox, joined by two pipes (length-prefixed JSON):
  * the program process runs the response's program as __main__, then serve_program() answers
    the judge: the values of names, calls, attributes, len/iter/[]/in/str/repr/bool of objects it
    returned. Plain builtin values go back serialised (encode); any other object stays in the
    program and the judge gets a handle to it;
  * the judge process (run_judge) runs the row's test code. Names the tests use but do not define
    are the program's; each top-level statement is a step, run to its end; one JSON line per step
    goes to the report and, after the last step, an end line with this run's secret.
The program never holds the test code, the expected values or the secret. Whatever it does to its
own interpreter (exit early, patch builtins or the server, lie in __eq__) changes only the bytes it
sends; the tests compare genuine builtins decoded from those bytes, in a process it cannot reach.
"""

import ast
import builtins
import importlib
import json
import os
import reprlib
import sys
import types

if "encode" not in globals():  # imported as a module, not sent in after judge_wire.py
    from rlsys.verify.judge_wire import decode, encode, recv, send

MAX_ITEMS = 1_000_000  # items taken from iterating a program object
_SHOW = reprlib.Repr()
_SHOW.maxstring, _SHOW.maxother, _SHOW.maxlist = 80, 80, 8


# ---- the program side: runs inside the untrusted process (it may rewrite all of this) ----

def serve_program(names, rfd, wfd):
    """Answer the judge until it says "bye" (or goes away), then end the process."""
    handles, ids = {}, {}

    def handle(obj):
        if isinstance(obj, types.ModuleType):
            return ["m", str(obj.__name__)]
        if type(obj).__module__ == "numpy" and getattr(obj, "shape", None) == ():  # np.int64(4) == 4, as in Python
            return encode(obj.item(), handle)
        k = ids.get(id(obj))
        if k is None:
            k = ids[id(obj)] = len(handles) + 1
            handles[k] = obj  # kept alive: the id stays valid
        try:
            return ["h", k, str(type(obj).__name__)[:80]]
        except Exception:
            return ["h", k, "object"]

    def resolve(k, _name):
        if k not in handles:
            raise ValueError(f"no program object #{k}")
        return handles[k]

    while True:
        msg = recv(rfd)
        if not isinstance(msg, dict) or msg.get("op") == "bye":
            if msg is not None:
                _flush()
                send(wfd, {"bye": True})
            os._exit(0)
        try:
            reply = _answer(msg, names, handle, resolve)
        except (SystemExit, KeyboardInterrupt) as e:
            send(wfd, {"exit": f"{type(e).__name__}({_safe_str(e)})"})
            _flush()
            os._exit(0)
        except BaseException as e:  # noqa: B036 - the program's errors are answers too
            reply = {"err": [_safe_name(e), _safe_str(e)]}
        send(wfd, reply)


def _answer(msg, names, handle, resolve):
    op = msg["op"]
    if op == "names":
        return {"ok": encode({n: names[n] for n in msg["names"] if n in names}, handle)}
    obj = resolve(msg["h"], "")
    args = [decode(a, resolve) for a in msg.get("args", [])]
    if op == "call":
        kw = {k: decode(v, resolve) for k, v in msg.get("kw", {}).items()}
        out = obj(*args, **kw)
        post = {}  # arguments the call changed in place (a test may check them after the call)
        for i, (sent, now) in enumerate(zip(msg.get("args", []), args)):
            if type(now) in (list, dict, set) and encode(now, handle) != sent:
                post[str(i)] = encode(now, handle)
        return {"ok": encode(out, handle), "post": post}
    if op == "iter":
        items = []
        for v in obj:
            items.append(v)
            if len(items) > MAX_ITEMS:
                raise ValueError(f"more than {MAX_ITEMS} items")
        return {"ok": encode(items, handle)}
    ops = {"getattr": lambda: getattr(obj, args[0]), "len": lambda: len(obj), "getitem": lambda: obj[args[0]],
           "contains": lambda: args[0] in obj, "str": lambda: str(obj), "repr": lambda: repr(obj),
           "bool": lambda: bool(obj)}
    return {"ok": encode(ops[op](), handle)}


def _safe_str(e):
    try:
        return str(e)[:500]
    except BaseException:  # noqa: B036
        return "?"


def _safe_name(e):
    try:
        return str(type(e).__name__)[:80]
    except BaseException:  # noqa: B036
        return "Exception"


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: B036
            pass


# ---- the judge side: runs the test code; never runs program code ----

class ProgramGone(BaseException):
    """The program process ended or broke the protocol: not an Exception, so `except Exception` in
    test code does not swallow it (and the judge fails the step anyway, see Judge.gone)."""


class ProgramError(Exception):
    """An exception the program raised whose type is not a builtin exception."""


class Remote:
    """An object that lives in the program. It equals only itself and hashes by identity, so no
    __eq__/__hash__ the program defines is ever consulted; other operations are asked of the program
    and their results come back as values."""

    __slots__ = ("_judge", "_id", "_label", "_type")

    def __init__(self, judge, k, label, type_name):
        object.__setattr__(self, "_judge", judge)
        object.__setattr__(self, "_id", k)
        object.__setattr__(self, "_label", label)  # how the tests reached it, for messages
        object.__setattr__(self, "_type", type_name)

    def __getattr__(self, name):
        if (name.startswith("__") and name.endswith("__")) or name in Remote.__slots__:
            raise AttributeError(name)  # internals' probes (copy, pickle) stay local
        return self._judge.ask("getattr", self, [name], label=f"{self._label}.{name}")

    def __call__(self, *args, **kw):
        return self._judge.call(self, args, kw)

    def __len__(self):
        return self._judge.ask("len", self, want=int)

    def __iter__(self):
        return iter(self._judge.ask("iter", self, want=list))

    def __getitem__(self, key):
        return self._judge.ask("getitem", self, [key])

    def __contains__(self, item):
        return self._judge.ask("contains", self, [item], want=bool)

    def __str__(self):
        return self._judge.ask("str", self, want=str)

    def __repr__(self):
        return self._judge.ask("repr", self, want=str)

    def __bool__(self):
        return self._judge.ask("bool", self, want=bool)


class Judge:
    """The judge's end of the pipes: every request, its answer, and whether the program is gone."""

    def __init__(self, rfd, wfd):
        self.rfd, self.wfd = rfd, wfd
        self.gone = None  # why the program can no longer answer
        self.answers = 0
        self.log = []  # this step's answers, shown when it fails
        self.remotes = {}

    def remote(self, k, type_name, label=""):
        if k not in self.remotes:
            self.remotes[k] = Remote(self, k, label or f"<{type_name}>", type_name)
        return self.remotes[k]

    def request(self, msg, label="?"):
        """(value, message) of one answer; raises what the program raised, or ProgramGone."""
        if self.gone:
            raise ProgramGone(self.gone)
        try:
            send(self.wfd, msg)
            reply = recv(self.rfd)
        except OSError:
            reply = None
        except (ValueError, RecursionError, MemoryError) as e:
            self.gone = f"the program sent a malformed answer ({type(e).__name__}: {str(e)[:100]})"
            raise ProgramGone(self.gone) from None
        if reply is None:
            self.gone = "the program's process ended"
        elif not isinstance(reply, dict) or not ({"ok", "err", "exit"} & set(reply)):
            self.gone = "the program sent a malformed answer"
        elif "exit" in reply:
            self.gone = f"the program exited: {str(reply['exit'])[:200]}"
        if self.gone:
            raise ProgramGone(self.gone)
        self.answers += 1
        if "err" in reply:
            raise _program_exception(reply["err"])
        try:
            return decode(reply["ok"], lambda k, t: self.remote(k, t, label)), reply
        except (ValueError, TypeError, RecursionError, OverflowError) as e:
            self.gone = f"the program sent a malformed value ({type(e).__name__})"
            raise ProgramGone(self.gone) from None

    def ask(self, op, target, args=(), want=None, label=None):
        msg = {"op": op, "h": target._id, "args": [encode(a, _handle_of) for a in args]}
        value, _ = self.request(msg, label or f"{op}({target._label})")
        self._note(f"{op}({target._label}{''.join(', ' + _show(a) for a in args)})", value)
        if want is not None and type(value) is not want:
            raise TypeError(f"{op}() of a program object gave a {type(value).__name__}, not {want.__name__}")
        return value

    def call(self, target, args, kw):
        sent = [encode(a, _handle_of) for a in args]
        msg = {"op": "call", "h": target._id, "args": sent, "kw": {str(k): encode(v, _handle_of) for k, v in kw.items()}}
        value, reply = self.request(msg, f"{target._label}(...)")
        shown = ", ".join([*map(_show, args), *(f"{k}={_show(v)}" for k, v in kw.items())])
        self._note(f"{target._label}({shown})", value)
        for i, new in (reply.get("post") or {}).items():  # in-place changes the program made to arguments
            _update(args[int(i)], decode(new, lambda k, t: self.remote(k, t)))
        return value

    def _note(self, what, value):
        if len(self.log) < 5:
            self.log.append(f"{what} -> {_show(value)}"[:300])


def _handle_of(obj):
    if isinstance(obj, Remote):
        return ["h", obj._id, "object"]
    raise TypeError(f"cannot pass a {type(obj).__name__} to the program (only plain values and its own objects)")


def _update(old, new):
    if type(old) is not type(new):
        raise TypeError("the program changed an argument's type")
    if isinstance(old, list):
        old[:] = new
    else:
        old.clear()
        old.update(new)


def _program_exception(err):
    name, message = (list(err) + ["Exception", ""])[:2] if isinstance(err, list) else ("Exception", "")
    name, message = str(name)[:80], str(message)[:500]
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:  # builtin exceptions with other constructors
            pass
    return ProgramError(f"{name}: {message}")


def _show(v):
    return f"<{v._type} object of the program>" if isinstance(v, Remote) else _SHOW.repr(v)


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


# ---- the test code: steps, the names it leaves to the program, and the judge's run ----

class Step:
    """A top-level statement of the test code (or a call of an uncalled test_* function). A test
    is a step that asserts or calls something; imports, definitions and plain assignments are set-up."""

    def __init__(self, line, src, is_test, node):
        self.line, self.src, self.is_test, self.node = line, src, is_test, node


def test_steps(code):
    """Steps of the test code, in the order the judge runs them; SyntaxError if it does not parse."""
    tree = ast.parse(code)
    steps, used = [], set()
    for node in tree.body:
        setup = isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        is_test = not setup and any(isinstance(n, (ast.Assert, ast.Call)) for n in ast.walk(node))
        src = ast.get_source_segment(code, node) or ast.unparse(node)
        steps.append(Step(node.lineno, src, is_test, node))
        if not setup:
            used |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    for node in tree.body:  # pytest style: test functions nobody calls are called by the judge
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test") and node.name not in used:
            steps.append(Step(node.lineno, f"{node.name}()", True, node.name))
    return steps


def program_names(code):
    """Names the test code uses but never binds, minus builtins: the program must provide them.
    Standard-library module names are split off: the judge imports its own (never the program's)."""
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
            bound |= {(a.asname or a.name).split(".")[0] for a in n.names}
        elif isinstance(n, ast.ExceptHandler) and n.name:
            bound.add(n.name)
        elif isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name:
            bound.add(n.name)
    free = used - bound - set(dir(builtins))
    stdlib = free & set(getattr(sys, "stdlib_module_names", ()))
    return sorted(free - stdlib), sorted(stdlib)


def judge_steps(code):
    """What the judge runs, in order: step 0 takes the program's names (when the tests use any),
    then test_steps(). The verifier maps the report's step numbers back onto this list."""
    theirs, _ = program_names(code)
    head = [Step(0, f"(the program's {', '.join(theirs)})", False, theirs)] if theirs else []
    return head + test_steps(code)


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
    for name in program_names(code)[1]:
        try:
            ns[name] = importlib.import_module(name)
        except Exception:
            pass
    for k, step in enumerate(judge_steps(code)):
        judge.log, before = [], judge.answers
        error = _run_step(step, ns, judge)
        rec = {"step": k, "ok": error is None, "answers": judge.answers - before}
        if error is not None:
            rec.update(error=error[:500], log=judge.log)
        report.write(json.dumps(rec) + "\n")
        if error is not None:
            break
    acked = _bye(judge)
    report.write(json.dumps({"end": nonce, "answers": judge.answers, "acked": acked, "gone": judge.gone}) + "\n")
    report.flush()


def _run_step(step, ns, judge):
    """None when the step ran to its end, else why not. A program that went away fails the step
    even if test code swallowed the error."""
    try:
        if isinstance(step.node, list):
            found = judge.request({"op": "names", "names": step.node}, "names")[0]
            if type(found) is not dict:
                raise ProgramGone("the program sent a malformed answer")
            for name, value in found.items():
                if name in step.node:
                    if isinstance(value, Remote):
                        object.__setattr__(value, "_label", name)
                    ns[name] = value
        elif isinstance(step.node, str):
            fn = ns.get(step.node)
            if callable(fn) and getattr(fn, "__code__", None) is not None and fn.__code__.co_argcount:
                raise TypeError(f"{step.node}() takes arguments (pytest fixtures are not supported)")
            fn()
        else:
            exec(compile(ast.Module([step.node], []), "<tests>", "exec", dont_inherit=True), ns)
        error = None
    except ProgramGone as e:
        error = str(e)
    except AssertionError as e:
        error = "AssertionError" + (f": {_safe_str(e)}" if _safe_str(e) else "")
    except BaseException as e:  # noqa: B036 - test code that raises anything fails its step
        error = f"{type(e).__name__}: {_safe_str(e)}"
    return judge.gone if judge.gone else error


def _bye(judge):
    """Whether the program was still serving when the tests ended (no early exit of any kind)."""
    if judge.gone:
        return False
    try:
        send(judge.wfd, {"op": "bye"})
        return recv(judge.rfd) == {"bye": True}
    except (OSError, ValueError):
        return False
