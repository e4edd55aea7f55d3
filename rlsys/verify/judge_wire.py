"""The judge's wire format (see judge.py): values as tagged JSON lists, messages length-prefixed.

Stdlib only: sent into the sandbox in front of judge_steps.py, judge.py and sandbox_boot.py. Only
exact builtins and standard-library value types are rebuilt from the bytes (decode), so whatever
object the program had, the tests compare genuine ints, strs, lists, Fractions, deques ... and
never run a method the program wrote. A value crosses as its exact standard type: a subclass as
its standard base (an int subclass with a lying __eq__ arrives as the int it holds), a named tuple
as a named tuple of the same fields, an OrderedDict as an OrderedDict (order-sensitive equality
survives), a deque as a deque (not equal to a list, as in Python).
"""

import builtins
import collections
import importlib
import json
import os
import struct
import sys
import types

MAX_MESSAGE = 32 << 20  # bytes of one message; more is a protocol error
MAX_DEPTH = 200  # nesting of a serialised value
_STDLIB = set(getattr(sys, "stdlib_module_names", ())) | {"builtins"}
_SEQ = ((list, "l"), (tuple, "t"), (set, "S"), (frozenset, "F"))
_NOT_IMPORTED = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"}  # side effects on import


def encode(x, handle=None, depth=0):
    """x as JSON-able tagged lists; objects of no standard value type as handle(obj)."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply to send")
    if x is None or x is True or x is False:
        return ["N"] if x is None else ["b", x]
    sub = lambda items: [encode(v, handle, depth + 1) for v in items]  # noqa: E731
    pairs = lambda d: [[encode(k, handle, depth + 1), encode(v, handle, depth + 1)] for k, v in dict.items(d)]  # noqa: E731
    if isinstance(x, int):
        return ["i", format(int.__index__(x), "x")]  # hex: no int/str digit limit
    if isinstance(x, float):
        return ["f", float.hex(float.__float__(x))]
    if isinstance(x, complex):
        z = complex(x)
        return ["c", float.hex(z.real), float.hex(z.imag)]
    if isinstance(x, str):
        return ["s", str.__str__(x)]
    if isinstance(x, bytes):
        return ["y", bytes.hex(x)]
    if isinstance(x, bytearray):
        return ["B", bytes(x).hex()]
    if isinstance(x, tuple) and _is_named_tuple(type(x)):
        mod = str(getattr(type(x), "__module__", "")).split(".")[0]  # a program's class goes with it (methods, isinstance)
        cls = None if mod in _STDLIB or handle is None else encode(type(x), handle, depth + 1)
        return ["nt", _identifier(type(x).__name__), list(type(x)._fields), sub(tuple.__iter__(x)), cls]
    for cls, tag in _SEQ:
        if isinstance(x, cls):
            return [tag, sub(cls.__iter__(x))]
    if isinstance(x, collections.OrderedDict):  # its own order (move_to_end), not the underlying dict's
        return ["O", [[encode(k, handle, depth + 1), encode(v, handle, depth + 1)]
                      for k, v in collections.OrderedDict.items(x)]]
    if isinstance(x, collections.Counter):
        return ["C", pairs(x)]
    if isinstance(x, collections.defaultdict):
        factory = x.default_factory
        return ["D", None if factory is None else encode(factory, handle, depth + 1), pairs(x)]
    if isinstance(x, dict):
        return ["d", pairs(x)]
    if isinstance(x, collections.deque):
        return ["Q", sub(collections.deque.__iter__(x)), collections.deque.maxlen.__get__(x)]
    fractions, decimal, datetime = (sys.modules.get(m) for m in ("fractions", "decimal", "datetime"))  # if imported:
    if fractions and isinstance(x, fractions.Fraction):  # no object is of a module never imported (start-up time)
        return ["Fr", encode(fractions.Fraction.numerator.fget(x)), encode(fractions.Fraction.denominator.fget(x))]
    if decimal and isinstance(x, decimal.Decimal):
        return ["De", decimal.Decimal.__str__(x)]
    for view, tag in _VIEWS:
        if isinstance(x, view):
            return [tag, sub(x)]
    if isinstance(x, types.SimpleNamespace):
        return ["ns", pairs(vars(x))]
    if isinstance(x, range):
        return ["r", encode(x.start), encode(x.stop), encode(x.step)]
    if datetime and isinstance(x, datetime.timedelta):
        return ["td", datetime.timedelta.days.__get__(x), datetime.timedelta.seconds.__get__(x),
                datetime.timedelta.microseconds.__get__(x)]
    for kind in ("datetime", "date", "time") if datetime else ():  # a datetime is a date: it goes first
        if isinstance(x, getattr(datetime, kind)):
            return ["dt", kind, getattr(datetime, kind).isoformat(x)]
    if isinstance(x, type) and (name := _standard_name(x)):
        return ["T", *name]
    if isinstance(x, types.BuiltinFunctionType) and getattr(builtins, str(x.__name__), None) is x:
        return ["bf", str(x.__name__)]  # max, len, ...: the receiver's own
    if handle is None:
        raise TypeError(f"cannot send a {type(x).__name__}")
    return handle(x)  # a program object: ["h", ...], ["K", ...], ["E", ...], ["X", ...] or ["m", name]


def decode(t, ext, depth=0):
    """The value of a tagged list as genuine builtins / standard types; ext(tag, args) for the
    tags that name objects of a process ("h", "K", "E", "X", "NT"). ValueError (or TypeError) on
    anything malformed: the sender's bytes are never trusted."""
    if depth > MAX_DEPTH or not isinstance(t, list) or not t or not isinstance(t[0], str):
        raise ValueError("malformed value")
    tag, a = t[0], t[1:]
    sub = lambda items: [decode(v, ext, depth + 1) for v in _list(items)]  # noqa: E731
    pairs = lambda items: [(decode(k, ext, depth + 1), decode(v, ext, depth + 1)) for k, v in _list(items)]  # noqa: E731
    simple = {"N": lambda: None, "b": lambda: _typed(a[0], bool), "i": lambda: int(_short(a[0]), 16),
              "f": lambda: float.fromhex(a[0]), "c": lambda: complex(float.fromhex(a[0]), float.fromhex(a[1])),
              "s": lambda: _typed(a[0], str), "y": lambda: bytes.fromhex(a[0]), "B": lambda: bytearray.fromhex(a[0]),
              "De": lambda: importlib.import_module("decimal").Decimal(_typed(a[0], str))}
    if tag in simple:
        return simple[tag]()
    if tag in ("l", "t", "S", "F"):
        return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](sub(a[0]))
    if tag in ("d", "O", "C"):
        return {"d": dict, "O": collections.OrderedDict, "C": collections.Counter}[tag](dict(pairs(a[0])))
    if tag == "D":
        factory = None if a[0] is None else decode(a[0], ext, depth + 1)
        if factory is not None and not callable(factory):
            raise ValueError("malformed defaultdict")
        return collections.defaultdict(factory, pairs(a[1]))
    if tag in ("vk", "vv", "vi"):  # dict views compare as in Python: keys and items like sets
        items = sub(a[0])
        return {"vk": lambda: dict.fromkeys(items).keys(), "vv": lambda: dict(enumerate(items)).values(),
                "vi": lambda: dict(items).items()}[tag]()
    if tag == "ns":
        return types.SimpleNamespace(**{_typed(k, str): v for k, v in pairs(a[0])})
    if tag == "nt":
        fields = tuple(map(str, _list(a[1])))
        cls = decode(a[3], ext, depth + 1) if len(a) > 3 and a[3] is not None else _named_tuple(_typed(a[0], str), fields)
        if not (isinstance(cls, type) and issubclass(cls, tuple) and tuple(getattr(cls, "_fields", ())) == fields):
            raise ValueError("malformed named tuple")
        return cls._make(sub(a[2]))
    if tag == "Q":
        return collections.deque(sub(a[0]), None if a[1] is None else _typed(a[1], int))
    if tag == "Fr":
        return importlib.import_module("fractions").Fraction(_typed(decode(a[0], ext), int), _typed(decode(a[1], ext), int))
    if tag == "r":
        return range(*(_typed(decode(v, ext), int) for v in a[:3]))
    if tag == "td":
        return importlib.import_module("datetime").timedelta(days=_typed(a[0], int), seconds=_typed(a[1], int), microseconds=_typed(a[2], int))
    if tag == "dt":
        if a[0] not in ("datetime", "date", "time"):
            raise ValueError("malformed value")
        return getattr(importlib.import_module("datetime"), a[0]).fromisoformat(_typed(a[1], str))
    if tag == "T":
        return _standard_type(_typed(a[0], str), _typed(a[1], str))
    if tag == "bf" and isinstance(getattr(builtins, _typed(a[0], str), None), types.BuiltinFunctionType):
        return getattr(builtins, a[0])
    if tag == "m" and a and type(a[0]) is str:  # a module: the receiver imports its own copy
        try:
            return importlib.import_module(a[0])
        except Exception:
            raise ValueError(f"module {a[0][:80]!r} does not import here") from None
    if tag in ("h", "K", "E", "X", "NT"):
        return ext(tag, a)
    raise ValueError(f"malformed value (tag {tag!r})")


_VIEWS = ((type({}.keys()), "vk"), (type({}.values()), "vv"), (type({}.items()), "vi"))
_NAMED = {}  # (name, fields) -> the receiver's named tuple class, so equal shapes share a type


def _is_named_tuple(cls):
    fields = getattr(cls, "_fields", None)
    return type(fields) is tuple and all(type(f) is str for f in fields)


def _named_tuple(name, fields):
    key = (name, fields)
    if key not in _NAMED:
        _NAMED[key] = collections.namedtuple(_identifier(name), fields, rename=True, module="collections")
    return _NAMED[key]


def _identifier(name):
    name = str(name)[:80]
    return name if name.isidentifier() and not name.startswith("_") else "namedtuple"


def _standard_name(cls):
    """(module, qualname) of a builtin or standard-library class that is importable as such."""
    try:
        mod, qual = str(type.__getattribute__(cls, "__module__")), str(type.__getattribute__(cls, "__qualname__"))
        if mod.split(".")[0] in _STDLIB and _standard_type(mod, qual) is cls:
            return [mod, qual]
    except Exception:
        pass
    return None


def _standard_type(mod, qual):
    if mod.split(".")[0] not in _STDLIB or mod.split(".")[0] in _NOT_IMPORTED:
        raise ValueError(f"not a standard module: {mod[:80]!r}")
    obj = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise ValueError(f"{mod}.{qual} is not a class")
    return obj


def _typed(x, cls):
    if type(x) is not cls:
        raise ValueError("malformed value")
    return x


def _short(x):
    if type(x) is not str or len(x) > 1 << 20:
        raise ValueError("malformed value")
    return x


def _list(x):
    if type(x) is not list:
        raise ValueError("malformed value")
    return x


def send(fd, obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def recv(fd):
    """The next message, or None at end of file; ValueError if it is malformed or too large."""
    head = _read_exact(fd, 4)
    if head is None:
        return None
    (n,) = struct.unpack(">I", head)
    if n > MAX_MESSAGE:
        raise ValueError(f"message of {n} bytes (limit {MAX_MESSAGE})")
    body = _read_exact(fd, n)
    if body is None:
        return None
    return json.loads(body)


def _read_exact(fd, n):
    chunks, got = [], 0
    while got < n:
        b = os.read(fd, min(n - got, 1 << 20))
        if not b:
            return None
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)
