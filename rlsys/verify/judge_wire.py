"""The judge's wire format (see judge.py): values as tagged JSON lists, messages length-prefixed.

Stdlib only: sent into the sandbox in front of judge.py and sandbox_boot.py. Only exact builtins
are rebuilt from the bytes (decode), so whatever object the program had, the tests compare
genuine ints, strs, lists ... and never run a method the program wrote.
"""

import importlib
import json
import os
import struct

MAX_MESSAGE = 32 << 20  # bytes of one message; more is a protocol error
MAX_DEPTH = 200  # nesting of a serialised value


def encode(x, handle=None, depth=0):
    """x as JSON-able tagged lists. Subclasses of builtins go as their base value (a lying __eq__
    does not survive); other objects as handle(obj)."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply to send")
    if x is None or x is True or x is False:
        return ["N"] if x is None else ["b", x]
    sub = lambda items: [encode(v, handle, depth + 1) for v in items]  # noqa: E731
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
    for cls, tag in ((list, "l"), (tuple, "t"), (set, "S"), (frozenset, "F")):
        if isinstance(x, cls):
            return [tag, sub(cls.__iter__(x))]
    if isinstance(x, dict):
        return ["d", [[encode(k, handle, depth + 1), encode(v, handle, depth + 1)] for k, v in dict.items(x)]]
    if handle is None:
        raise TypeError(f"cannot send a {type(x).__name__}")
    return handle(x)  # ["h", id, type name], or ["m", name] for a module


def decode(t, handle, depth=0):
    """The value of a tagged list as genuine builtins; handle(id, type_name) for "h". ValueError
    (or TypeError) on anything malformed: the sender's bytes are never trusted."""
    if depth > MAX_DEPTH or not isinstance(t, list) or not t or not isinstance(t[0], str):
        raise ValueError("malformed value")
    tag, a = t[0], t[1:]
    sub = lambda items: [decode(v, handle, depth + 1) for v in _list(items)]  # noqa: E731
    if tag == "N":
        return None
    if tag == "b" and a and type(a[0]) is bool:
        return a[0]
    if tag == "i" and a and isinstance(a[0], str) and len(a[0]) <= 1 << 20:
        return int(a[0], 16)
    if tag == "f" and a:
        return float.fromhex(a[0])
    if tag == "c" and len(a) == 2:
        return complex(float.fromhex(a[0]), float.fromhex(a[1]))
    if tag == "s" and a and type(a[0]) is str:
        return a[0]
    if tag == "y" and a:
        return bytes.fromhex(a[0])
    if tag in ("l", "t", "S", "F") and a:
        return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](sub(a[0]))
    if tag == "d" and a:
        return {decode(k, handle, depth + 1): decode(v, handle, depth + 1) for k, v in _list(a[0])}
    if tag == "h" and len(a) == 2 and type(a[0]) is int and type(a[1]) is str:
        return handle(a[0], a[1][:80])
    if tag == "m" and a and type(a[0]) is str:  # a module: the receiver imports its own copy
        try:
            return importlib.import_module(a[0])
        except Exception:
            raise ValueError(f"module {a[0][:80]!r} does not import here") from None
    raise ValueError(f"malformed value (tag {tag!r})")


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
