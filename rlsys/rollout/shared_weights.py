"""Engine weights the sender writes itself (rollout.cpu_gemm=plain, engines on the sender's node).

Once a plain-mode sync has made every received tensor an in-place write (direct_load.py), the
parameters those writes land in are moved into one shared-memory file per engine, and each write
is recorded once by running the layer's own weight_loader with copy_ intercepted: destination
(byte offset, shape, strides in the file) and source (offset, shape, strides in the received
tensor; TP narrowing and fused q/k/v or gate/up rows included). A sync then holds the engine
inside one call (between engine steps, so no forward reads a half-written model), the sender
replays those writes from its own tensors straight into the file, the one copy of the sync, and
releases it. A loader that writes anything but a view of the received tensor leaves the engine on
the bucket path.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode

HELD, WRITTEN, ABORTED = 1, 2, 3  # the file's flag (an int64 at offset 0; 0: the engine is not held)
log = logging.getLogger(__name__)
_ALIGN = 64  # the flag's slot, and the alignment of every parameter after it


class _Recorder(TorchDispatchMode):
    """The writes a weight_loader makes, not executed: copies, and fills (an embedding zeroes its
    padded rows); any other write marks it unsupported."""

    def __init__(self):
        super().__init__()
        self.writes, self.other_writes = [], False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.copy_.default and not kwargs:
            self.writes.append((args[0], args[1]))
            return args[0]
        if func in (torch.ops.aten.fill_.Scalar, torch.ops.aten.zero_.default) and not kwargs:
            self.writes.append((args[0], float(args[1]) if len(args) > 1 else 0.0))
            return args[0]
        if func._schema.is_mutable:
            self.other_writes = True
            return args[0]
        return func(*args, **(kwargs or {}))


class SharedWeights:
    """One engine's written parameters in a shared-memory file, and the writes of each HF name."""

    def __init__(self, loaders: list, root: str = "/dev/shm"):
        routes = [(name, r) for loader in loaders for name, rs in loader.routes.items() for r in rs]
        if not routes or any(r.kind != "param" for _, r in routes):
            raise _Unsupported("not every tensor is an in-place write yet")
        params = list({id(r.param): r.param for _, r in routes}.values())
        offsets, total = {}, _ALIGN
        for p in params:
            if not p.is_contiguous():
                raise _Unsupported(f"a parameter of shape {tuple(p.shape)} is not contiguous")
            offsets[id(p)] = total
            total += -(-p.nbytes // _ALIGN) * _ALIGN
        self.writes = {}  # recorded first: nothing moves unless every write can be replayed
        for name, r in routes:
            self.writes.setdefault(name, []).extend(self._record(name, r, offsets[id(r.param)]))
        from rlsys.sync.shm import _unlink  # lazily: rlsys.sync imports this module

        self.path = os.path.join(root, f"rlsys-weights-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self.buf = _create(self.path, total)
        self.flag = self.buf[:8].view(torch.int64)
        self._finalizer = weakref.finalize(self, _unlink, [self.path])
        for p in params:  # the engine's one extra copy, once
            view = self.buf[offsets[id(p)]:offsets[id(p)] + p.nbytes].view(p.dtype).view(p.shape)
            view.copy_(p.data)
            p.data = view

    @staticmethod
    def _record(name: str, r, offset: int) -> list[tuple]:
        """(destination byte offset in the file, dtype, shape, strides, then the source's storage
        offset, shape, strides in the received tensor, or a fill value) per write."""
        src = torch.empty(r.src_shape, dtype=r.src_dtype)  # never read: the recorder only notes the writes
        with _Recorder() as rec:
            r.loader(r.param, src, *r.args, **r.kwargs)
        start, end, sptr = r.param.data_ptr(), r.param.data_ptr() + r.param.nbytes, src.untyped_storage().data_ptr()
        out = []
        for dst, s in rec.writes:
            if dst.numel() == 0:  # e.g. the padded rows of an embedding that has none
                continue
            last = dst.data_ptr() + dst.element_size() * sum((n - 1) * st for n, st in zip(dst.shape, dst.stride()))
            if dst.dtype != r.param.dtype or dst.data_ptr() < start or last >= end:
                raise _Unsupported(f"{name}: its loader writes outside its parameter")
            where = (offset + dst.data_ptr() - start, str(dst.dtype), tuple(dst.shape), tuple(dst.stride()))
            if isinstance(s, float):
                out.append((*where, s))
            elif s.untyped_storage().data_ptr() == sptr:
                out.append((*where, s.storage_offset(), tuple(s.shape), tuple(s.stride())))
            else:
                raise _Unsupported(f"{name}: its loader writes a transformed tensor")
        if rec.other_writes or not any(len(w) == 7 for w in out):
            raise _Unsupported(f"{name}: its loader does more than copy")
        return out

    def describe(self) -> dict:
        return {"path": self.path, "nbytes": self.buf.numel(), "writes": self.writes}


class _Unsupported(Exception):
    pass


def share(loaders: list, current: SharedWeights | None) -> SharedWeights | None:
    """The engine's shared weights: the current ones while their file is there (the sender unlinks
    it once mapped, so a new sender gets a new file), else new ones, or None where not possible."""
    if current is not None and os.path.exists(current.path) and _same_names(current, loaders):
        return current
    try:
        return SharedWeights(loaders)
    except (_Unsupported, OSError):
        return None


def _same_names(shared: SharedWeights, loaders: list) -> bool:
    return set(shared.writes) == {n for loader in loaders for n in loader.routes}


def hold(flag: torch.Tensor, sender_pid: int, timeout_s: float) -> bool:
    """Tell the sender this engine is held, and wait until it has written (True) or gave up (False).
    A sender that dies meanwhile (same node: its pid is checked, when this process can see it) or
    never finishes lets the engine go with weights half written and the old version; the push then
    reports the engine failed and the fleet restarts it."""
    watch = _alive(sender_pid)  # another pid namespace: only the timeout applies
    flag[0] = HELD
    deadline, nap = time.monotonic() + timeout_s, 50e-6
    while int(flag[0]) == HELD:
        time.sleep(nap)  # the core goes to the sender, which copies
        nap = min(2 * nap, 1e-3)
        died = watch and not _alive(sender_pid)
        if died or time.monotonic() > deadline:
            log.warning("weight sync: the sender (pid %d) %s while writing this engine's weights", sender_pid,
                        "died" if died else f"did not finish within {timeout_s:.0f} s")
            flag[0] = 0
            return False
    written, flag[0] = int(flag[0]) == WRITTEN, 0
    return written


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: there
        pass
    return True


def _create(path: str, size: int) -> torch.Tensor:
    from rlsys.sync.shm import map_file, reserve_file

    reserve_file(path, size)
    return map_file(path, size, writable=True)[1]
