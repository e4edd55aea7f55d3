"""The program's side of the judge (see judge.py): serve_program answers the judge's requests.

Stdlib only; sent into the sandbox after judge_wire.py. Runs inside the untrusted process, which
may rewrite all of it: whatever it does changes only the bytes it sends, which the judge decodes
into genuine values of standard types (judge_wire.decode) or handles to the program's objects.
"""

import os
import sys
import types

if "encode" not in globals():  # imported as a module, not sent in after judge_wire.py
    from rlsys.verify.judge_wire import _STDLIB, _is_named_tuple, decode, encode, recv, send

MAX_TAKE = 1024  # items of a program iterator fetched per request (1, 2, 4, ... up to this)
_IN_PLACE = (list, dict, set, bytearray)  # arguments whose in-place changes go back to the tests


def serve_program(names, rfd, wfd):
    """Answer the judge until it says "bye" (or goes away), then end the process."""
    handles, ids, pending = {}, {}, {}

    def register(obj):
        k = ids.get(id(obj))
        if k is None:
            k = ids[id(obj)] = len(handles) + 1
            handles[k] = obj  # kept alive: the id stays valid
        return k

    def handle(obj):
        name = _safe(lambda: str(getattr(obj, "__name__", None) or type(obj).__name__)[:80], "object")
        if isinstance(obj, types.ModuleType):
            return ["m", str(obj.__name__)]
        if type(obj).__module__ == "numpy" and getattr(obj, "shape", None) == ():  # np.int64(4) == 4, as in Python
            return encode(obj.item(), handle)
        if isinstance(obj, type):
            if issubclass(obj, BaseException):
                bases = [encode(b, handle) for b in obj.__bases__ if isinstance(b, type) and issubclass(b, BaseException)]
                return ["E", register(obj), name, bases]
            if issubclass(obj, tuple) and _is_named_tuple(obj):  # a NamedTuple class: its fields and defaults
                defaults = [obj._field_defaults[f] for f in obj._fields if f in getattr(obj, "_field_defaults", {})]
                return ["NT", register(obj), name, list(obj._fields), encode(defaults, handle)]
            return ["K", register(obj), name]
        if isinstance(obj, BaseException):
            attrs = {k: v for k, v in vars(obj).items() if type(k) is str and not k.startswith("__")}
            return ["X", encode(type(obj), handle), encode(tuple(obj.args), handle), _safe_str(obj),
                    _safe(lambda: encode(attrs, handle), ["d", []])]
        mod = _safe(lambda: str(type(obj).__module__).split(".")[0], "builtins")
        cls = None if mod in _STDLIB else encode(type(obj), handle)  # its class, when the program wrote it
        dc = _safe(lambda: _dataclass_flags(type(obj)), None)  # a dataclass compares by its fields
        return ["h", register(obj), _safe(lambda: str(type(obj).__name__)[:80], "object"),
                cls if cls and cls[0] == "K" else None, dc]

    def resolve(tag, a):
        if tag in ("h", "K", "E", "NT") and a and a[0] in handles:
            return handles[a[0]]
        raise ValueError("no such program object")

    while True:
        msg = recv(rfd)
        if not isinstance(msg, dict) or msg.get("op") == "bye":
            if msg is not None:
                _flush()
                send(wfd, {"bye": True})
            os._exit(0)
        try:
            reply = _answer(msg, names, handle, resolve, pending)
        except (SystemExit, KeyboardInterrupt) as e:
            send(wfd, {"exit": f"{type(e).__name__}({_safe_str(e)})"})
            _flush()
            os._exit(0)
        except BaseException as e:  # noqa: B036 - the program's errors are answers too
            reply = {"err": [_safe_name(e), _safe_str(e)]}
            try:
                reply["x"] = encode(e, handle)
            except BaseException:  # noqa: B036 - then the judge rebuilds it from name and message
                pass
        send(wfd, reply)


def _answer(msg, names, handle, resolve, pending):
    op = msg["op"]
    if op == "names":
        return {"ok": encode({n: names[n] for n in msg["names"] if n in names}, handle)}
    obj = resolve("h", [msg["h"]])
    args = [decode(a, resolve) for a in msg.get("args", [])]
    if op == "call":
        kw = {k: decode(v, resolve) for k, v in msg.get("kw", {}).items()}
        out = obj(*args, **kw)
        post = {}  # arguments the call changed in place (a test may check them after the call)
        for i, (sent, now) in enumerate(zip(msg.get("args", []), args)):
            if type(now) in _IN_PLACE and encode(now, handle) != sent:
                post[str(i)] = encode(now, handle)
        return {"ok": encode(out, handle), "post": post}
    if op == "take":  # up to n items of an iterator; an error after some items waits for the next request
        if msg["h"] in pending:
            raise pending.pop(msg["h"])
        items, done = [], False
        while len(items) < min(int(msg["n"]), MAX_TAKE):
            try:
                items.append(next(obj))
            except StopIteration:
                done = True
                break
            except BaseException as e:  # noqa: B036
                if not items:
                    raise
                pending[msg["h"]] = e
                break
        return {"ok": encode(items, handle), "done": done}
    ops = {"getattr": lambda: getattr(obj, args[0]), "len": lambda: len(obj), "getitem": lambda: obj[args[0]],
           "contains": lambda: args[0] in obj, "setattr": lambda: setattr(obj, args[0], args[1]),
           "setitem": lambda: obj.__setitem__(args[0], args[1]), "delitem": lambda: obj.__delitem__(args[0]),
           "str": lambda: str(obj), "repr": lambda: repr(obj),
           "bool": lambda: bool(obj), "iter": lambda: iter(obj), "isinstance": lambda: isinstance(obj, args[0]),
           "fields": lambda: _fields(obj), "await": lambda: __import__("asyncio").run(obj),
           "ntattr": lambda: getattr(obj._make(args[1]), args[0]),  # a NamedTuple method, on the judge's value
           "issubclass": lambda: issubclass(obj, args[0])}
    return {"ok": encode(ops[op](), handle)}


def _safe(fn, default):
    try:
        return fn()
    except BaseException:  # noqa: B036
        return default


def _safe_str(e):
    return _safe(lambda: str(e)[:500], "?")


def _safe_name(e):
    return _safe(lambda: str(type(e).__name__)[:80], "Exception")


def _flush():
    for stream in (sys.stdout, sys.stderr):
        _safe(stream.flush, None)


def _dataclass_flags(cls):
    """[eq, order, hash] of a dataclass whose __eq__ is the one dataclasses generated, else None."""
    params, eq = cls.__dataclass_params__, cls.__eq__
    if not (params.eq and eq.__qualname__.endswith(".__eq__") and eq.__code__.co_filename == "<string>"):
        return None
    return [True, bool(params.order), bool(params.frozen or params.unsafe_hash)]


def _fields(obj):
    """[name, value] of the fields a dataclass compares; each must be the object's own attribute."""
    own = getattr(obj, "__dict__", {})
    out = []
    for f in __import__("dataclasses").fields(obj):
        if f.compare:
            if f.name not in own and not isinstance(getattr(type(obj), f.name, None), types.MemberDescriptorType):
                raise TypeError(f"field {f.name!r} is not an attribute of the object")
            out.append([f.name, getattr(obj, f.name)])
    return out
