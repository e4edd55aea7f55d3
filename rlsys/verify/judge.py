"""Test code judged outside the program: the program answers calls, a separate process runs the tests.

Stdlib only. Sent into the sandbox as judge_wire.py + judge_steps.py + judge_program.py + this file
+ judge_run.py + sandbox_boot.py (the sandbox cannot import rlsys). Two sibling processes run in one sandbox, joined by two pipes
(length-prefixed JSON):
  * the program process runs the response's program as __main__, then serve_program() answers
    the judge: the values of names, calls, attributes, len/iter/next/[]/in/str/repr/bool/isinstance
    of objects it returned. Values of standard types go back serialised (judge_wire.encode); any
    other object stays in the program and the judge gets a handle to it; a class of the program
    arrives as a class (isinstance, type(x) is C, constructing one work), an exception class of the
    program as a local exception class with the same builtin bases (`except MyError` works);
  * the judge process (run_judge) runs the row's test code (judge_steps.py says what runs).
The program never holds the test code, the expected values or the secret. Whatever it does to its
own interpreter (exit early, patch builtins or the server, lie in __eq__) changes only the bytes it
sends; the tests compare genuine values decoded from those bytes, in a process it cannot reach.
"""

import builtins
import collections
import reprlib

if "serve_program" not in globals():  # imported as a module, not sent in after the files it uses
    from rlsys.verify.judge_program import MAX_TAKE, _safe
    from rlsys.verify.judge_wire import _list, decode, encode, recv, send

_CONTROL = (StopIteration, StopAsyncIteration, GeneratorExit, KeyboardInterrupt, SystemExit)
_RUNNER_SIGNALS = ("SkipTest", "_ShouldStop")  # unittest's: a program raising them would skip or stop a test
MAX_MEMBERS = 100_000  # items of a program object `in` looks through (all of them: an endless one is not judged)
_ASKED = {"__dict__", "__name__", "__qualname__"}  # dunder attributes tests read of program objects
_SHOW = reprlib.Repr()
_SHOW.maxstring, _SHOW.maxother, _SHOW.maxlist = 80, 80, 8


# ---- the judge side: runs the test code; never runs program code ----

class ProgramGone(BaseException):
    """The program process ended, broke the protocol or was caught lying: not an Exception, so
    `except Exception` in test code does not swallow it (and the judge fails the step anyway)."""


class ProgramError(Exception):
    """An exception the program raised that cannot be rebuilt as its own class."""


class Remote:
    """An object that lives in the program. It equals only itself and hashes by identity, so no
    __eq__/__hash__ the program defines is ever consulted; other operations are asked of the program
    and their results come back as values."""

    __slots__ = ("_judge", "_id", "_label", "_type", "_dataclass")

    def __eq__(self, other):  # a dataclass (eq=True) compares its fields as values, as its generated __eq__ does
        if self is other:
            return True
        return self._judge.fields(self, other, "eq") if self._dataclass else NotImplemented

    def __hash__(self):  # a frozen (or unsafe_hash) dataclass hashes its fields, others by identity
        if self._dataclass and self._dataclass[2]:
            return hash(tuple(f[1] for f in self._judge.ask("fields", self, want=list)))
        return object.__hash__(self)

    def __lt__(self, other):  # dataclass(order=True): field tuples, in the judge
        return self._judge.fields(self, other, "order", lambda a, b: a < b)

    def __le__(self, other):
        return self._judge.fields(self, other, "order", lambda a, b: a <= b)

    def __gt__(self, other):
        return self._judge.fields(self, other, "order", lambda a, b: a > b)

    def __ge__(self, other):
        return self._judge.fields(self, other, "order", lambda a, b: a >= b)

    def __getattr__(self, name):
        if (name.startswith("__") and name.endswith("__") and name not in _ASKED) or name in Remote.__slots__:
            raise AttributeError(name)  # internals' probes (copy, pickle) stay local
        return self._judge.ask("getattr", self, [name], label=f"{self._label}.{name}")

    def __setattr__(self, name, value):
        self._judge.ask("setattr", self, [name, value], label=f"{self._label}.{name} = ...")

    def __setitem__(self, key, value):
        self._judge.ask("setitem", self, [key, value])

    def __delitem__(self, key):
        self._judge.ask("delitem", self, [key])

    def __call__(self, *args, **kw):
        return self._judge.call(self, args, kw)

    def __len__(self):
        return self._judge.ask("len", self, want=int)

    def __iter__(self):
        return self._judge.items(self._judge.iterator(self))

    def __next__(self):
        for item in self._judge.items(self, first=1, most=1):
            return item
        raise StopIteration

    def __getitem__(self, key):
        return self._judge.ask("getitem", self, [key])

    def __contains__(self, item):
        """`in` is a comparison: decided here over all the values the object yields, never by its own
        __contains__ (an always-yes __contains__ is the hack); as in Python, an iterator is consumed
        up to the match."""
        it = self._judge.iterator(self)
        values = self._judge.members(it)
        at = next((k for k, v in enumerate(values) if v is item or v == item), None)
        self._judge.drop(it, len(values) if at is None else at + 1)
        return at is not None

    def __str__(self):
        return self._judge.ask("str", self, want=str)

    def __repr__(self):
        return self._judge.ask("repr", self, want=str)

    def __bool__(self):
        return self._judge.ask("bool", self, want=bool)


class ProgramClass(type):
    """A class of the program, in the judge: its objects' handles are its instances (type(x) is C),
    isinstance/issubclass ask the program, calling it constructs an object in the program."""

    def __call__(cls, *args, **kw):
        return cls._ref._judge.call(cls._ref, args, kw)

    def __getattr__(cls, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return cls._ref._judge.ask("getattr", cls._ref, [name], label=f"{cls.__name__}.{name}")

    def __iter__(cls):  # an Enum class: list(Color), Color["RED"], len(Color)
        return iter(cls._ref)

    def __len__(cls):
        return len(cls._ref)

    def __getitem__(cls, key):
        return cls._ref[key]

    def __instancecheck__(cls, obj):
        if type.__instancecheck__(cls, obj):
            return True
        return isinstance(obj, Remote) and cls._ref._judge.ask("isinstance", obj, [cls], want=bool)

    def __subclasscheck__(cls, sub):
        if type.__subclasscheck__(cls, sub):
            return True
        return isinstance(sub, ProgramClass) and cls._ref._judge.ask("issubclass", sub._ref, [cls], want=bool)

    def __repr__(cls):
        return f"<class {cls.__name__!r} of the program>"


def _program_str(self):
    return self.__dict__.get("_program_str") or BaseException.__str__(self)


class Judge:
    """The judge's end of the pipes: every request, its answer, and whether the program is gone."""

    def __init__(self, rfd, wfd):
        self.rfd, self.wfd = rfd, wfd
        self.gone = None  # why the program can no longer answer, or was caught lying
        self.answers = 0
        self.values = 0  # plain values among the program's names bound for the tests
        self.log = []  # this step's answers, shown when it fails
        self.remotes, self.classes, self.class_ids = {}, {}, {}
        self.buffers, self.exhausted = {}, set()  # items of program iterators fetched but not consumed yet
        self.unittest_failure = None  # a failure unittest reported during this step (any runner)

    def caught(self, why):
        self.gone = why
        raise ProgramGone(why)

    def ext(self, tag, a, label=""):
        """The judge's object for a program object's tag (see serve_program's handle)."""
        if tag == "X" and len(a) == 4:
            return _exception(decode(a[0], self.ext), decode(a[1], self.ext), a[2], decode(a[3], self.ext))
        if not a or type(a[0]) is not int or len(a) < 2 or type(a[1]) is not str:
            raise ValueError("malformed value")
        k, name = a[0], a[1][:80]
        if tag == "h":
            cls = decode(a[2], self.ext) if len(a) > 2 and a[2] is not None else Remote
            obj = self.remote(k, name, label, cls if isinstance(cls, ProgramClass) else Remote)
            if name == "coroutine" and cls is Remote:  # a coroutine of the program: awaiting it runs it there
                return self.awaited(obj)
            dc = a[3] if len(a) > 3 and type(a[3]) is list and len(a[3]) == 3 and all(type(v) is bool for v in a[3]) else None
            object.__setattr__(obj, "_dataclass", dc)
            return obj
        if tag == "K" and k not in self.classes:
            ref = self.remote(k, "type", name, Remote, key=("class", k))
            self.classes[k] = ProgramClass(name, (Remote,), {"__slots__": (), "_ref": ref, "__module__": "program"})
        if tag == "NT" and k not in self.classes:
            self.classes[k] = self.named_tuple_class(k, name, a)
            self.class_ids[self.classes[k]] = ["NT", k, name]
        if tag == "E" and k not in self.classes:
            bases = tuple(b for b in (decode(x, self.ext) for x in _list(a[2])) if isinstance(b, type)
                          and issubclass(b, BaseException) and not _is_signal(b)) or (Exception,)
            body = {"__str__": _program_str, "__module__": "program"}
            try:
                self.classes[k] = type(name, bases, body)
            except TypeError:  # bases whose layouts do not mix
                self.classes[k] = type(name, bases[:1], body)
            self.class_ids[self.classes[k]] = ["E", k, name, []]
        return self.classes[k]

    def named_tuple_class(self, k, name, a):
        """A program's NamedTuple class here: a named tuple of its fields and defaults (values built
        here compare as tuples); its other attributes (methods, properties) are asked of the program,
        on an instance it builds from this value."""
        fields, defaults = tuple(map(str, _list(a[2]))), decode(a[3], self.ext) if len(a) > 3 else []
        base = collections.namedtuple(name, fields, rename=True, defaults=defaults or None, module="program")
        ref, judge = self.remote(k, "type", name, Remote, key=("class", k)), self

        def forward(value, attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return judge.ask("ntattr", ref, [attr, tuple(value)], label=f"{name}.{attr}")
        return type(name, (base,), {"__slots__": (), "__getattr__": forward, "__module__": "program"})

    async def awaited(self, coroutine):
        """A coroutine here (asyncio.run, await, gather take it) whose result is the program's
        coroutine run to its end in the program's own event loop."""
        return self.ask("await", coroutine)

    def remote(self, k, type_name, label, cls, key=None):
        key = key or k
        if key not in self.remotes:
            obj = object.__new__(cls)
            for slot, value in zip(Remote.__slots__, (self, k, label or f"<{type_name}>", type_name, None)):
                object.__setattr__(obj, slot, value)
            self.remotes[key] = obj
        return self.remotes[key]

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
            self.caught(f"the program sent a malformed answer ({type(e).__name__}: {str(e)[:100]})")
        if reply is None:
            self.caught("the program's process ended")
        elif not isinstance(reply, dict) or not ({"ok", "err", "exit"} & set(reply)):
            self.caught("the program sent a malformed answer")
        elif "exit" in reply:
            self.caught(f"the program exited: {str(reply['exit'])[:200]}")
        self.answers += 1
        if "err" in reply:
            raise self.error(reply)
        try:
            return decode(reply["ok"], lambda tag, a: self.ext(tag, a, label)), reply
        except (ValueError, TypeError, RecursionError, OverflowError, IndexError, KeyError, AttributeError) as e:
            self.caught(f"the program sent a malformed value ({type(e).__name__})")

    def error(self, reply):
        """The exception the program raised, as its own class where it can be rebuilt."""
        if "x" in reply:
            try:
                e = decode(reply["x"], self.ext)
                if isinstance(e, BaseException):
                    return e
            except Exception:
                pass
        err = reply["err"] if isinstance(reply["err"], list) else []
        name, message = (list(map(str, err)) + ["Exception", ""])[:2]
        cls = getattr(builtins, name[:80], None)
        return _exception(cls if isinstance(cls, type) and issubclass(cls, BaseException) else ProgramError,
                          (message[:500],) if cls else (f"{name[:80]}: {message[:500]}",), message[:500])

    def ask(self, op, target, args=(), want=None, label=None):
        msg = {"op": op, "h": target._id, "args": [encode(a, self.handle_of) for a in args]}
        value, _ = self.request(msg, label or f"{op}({target._label})")
        self._note(f"{op}({target._label}{''.join(', ' + _show(a) for a in args)})", value)
        if want is not None and type(value) is not want:
            raise TypeError(f"{op}() of a program object gave a {type(value).__name__}, not {want.__name__}")
        return value

    def call(self, target, args, kw):
        sent = [encode(a, self.handle_of) for a in args]
        msg = {"op": "call", "h": target._id, "args": sent, "kw": {str(k): encode(v, self.handle_of) for k, v in kw.items()}}
        value, reply = self.request(msg, f"{target._label}(...)")
        shown = ", ".join([*map(_show, args), *(f"{k}={_show(v)}" for k, v in kw.items())])
        self._note(f"{target._label}({shown})", value)
        for i, new in (reply.get("post") or {}).items():  # in-place changes the program made to arguments
            _update(args[int(i)], decode(new, self.ext))
        return value

    def iterator(self, target):
        """The program's iter() of one of its objects, as a handle."""
        it = self.ask("iter", target)
        if not isinstance(it, Remote):
            raise TypeError("iter() of a program object did not give an iterator")
        return it

    def items(self, it, first=1, most=MAX_TAKE):
        """A program iterator's items, fetched in growing chunks (exact for next(); few requests for
        list()); what was fetched but not consumed stays for the next next() or loop."""
        buf, n = self.buffers.setdefault(it._id, collections.deque()), first
        while True:
            while buf:
                yield buf.popleft()
            if it._id in self.exhausted:
                return
            self._fetch(it, n)
            n = min(n * 2, most)

    def members(self, it):
        """All the items an iterator still has, without consuming them (see drop)."""
        buf = self.buffers.setdefault(it._id, collections.deque())
        while it._id not in self.exhausted:
            if len(buf) > MAX_MEMBERS:
                raise TypeError(f"a program object yields more than {MAX_MEMBERS} items: `in` cannot judge it")
            self._fetch(it, min(max(len(buf), 1) * 2, MAX_TAKE))
        return list(buf)

    def drop(self, it, n):
        buf = self.buffers[it._id]
        for _ in range(n):
            buf.popleft()

    def _fetch(self, it, n):
        value, reply = self.request({"op": "take", "h": it._id, "n": n}, f"next({it._label})")
        if type(value) is not list:
            self.caught("the program sent a malformed answer")
        self._note(f"next({it._label}) x{len(value)}", value[:3])
        self.buffers[it._id].extend(value)
        if reply.get("done") or not value:
            self.exhausted.add(it._id)

    def fields(self, a, b, kind, compare=None):
        """Python's dataclass comparison of two program objects, done here on their fields as values:
        only for the same class, with eq (or order) on; else NotImplemented (Python then says
        unequal, or raises TypeError for <)."""
        if not (isinstance(b, Remote) and type(a) is type(b) and type(a) is not Remote and a._dataclass
                and b._dataclass and a._dataclass[kind == "order"]):
            return NotImplemented
        mine, theirs = (self.ask("fields", x, want=list) for x in (a, b))
        names = [[f[0] for f in x if type(f) is list and len(f) == 2] for x in (mine, theirs)]
        if not names[0] or names[0] != names[1] or len(names[0]) != len(mine):  # no fields: nothing to compare
            self.caught(f"the program's {type(a).__name__} says it is a dataclass but sent no fields to compare")
        mine, theirs = tuple(f[1] for f in mine), tuple(f[1] for f in theirs)
        return mine == theirs if compare is None else compare(mine, theirs)

    def handle_of(self, obj):
        if isinstance(obj, Remote):
            return ["h", obj._id, "object"]
        if isinstance(obj, ProgramClass):
            return ["K", obj._ref._id, obj.__name__]
        if isinstance(obj, type) and obj in self.class_ids:
            return self.class_ids[obj]
        raise TypeError(f"cannot pass a {type(obj).__name__} to the program (only values of standard types and its own objects)")

    def _note(self, what, value):
        if len(self.log) < 5:
            self.log.append(f"{what} -> {_show(value)}"[:300])


def _exception(cls, args, text, attrs=None):
    """An exception of class cls; a control-flow exception never crosses as itself (StopIteration
    inside map() or all() would end the iteration silently): it arrives as a RuntimeError."""
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        raise ValueError("malformed exception")
    text = str(text)[:500]
    if _is_signal(cls):
        return RuntimeError(f"the program raised {cls.__name__}" + (f": {text}" if text else ""))
    args = tuple(args) if isinstance(args, tuple) else (text,)
    try:
        e = cls(*args)
    except Exception:
        e = cls.__new__(cls)
        e.args = args
    if type(cls) is type and cls.__module__ == "program":
        e._program_str = text
        for k, v in (attrs if isinstance(attrs, dict) else {}).items():  # e.code, e.field ... of the program's exception
            setattr(e, str(k), v)
    return e


def _is_signal(cls):
    """A control-flow exception (StopIteration ...) or a test runner's signal (unittest.SkipTest)."""
    return issubclass(cls, _CONTROL) or any(str(getattr(c, "__module__", "")).startswith("unittest")
                                            and c.__name__ in _RUNNER_SIGNALS for c in cls.__mro__)


def _update(old, new):
    if type(old) is not type(new):
        raise TypeError("the program changed an argument's type")
    if isinstance(old, (list, bytearray)):
        old[:] = new
    else:
        old.clear()
        old.update(new)


def _show(v):
    if isinstance(v, Remote):
        return f"<{v._type} object of the program>"
    return _safe(lambda: _SHOW.repr(v), f"<{type(v).__name__}>")
