"""Shared-memory bucket buffers for engines on the sender's node.

The sender owns a ring of bucket-sized files in /dev/shm (two slots: it packs bucket k+1 into one
while the engines load bucket k from the other) and writes each tensor into a slot once. An
engine worker maps a slot file once and reads zero-copy views of it, so a bucket is never copied
between the two processes. vLLM's engine core is a process Ray does not manage, so it cannot read
Ray's object store itself; a file both sides map is the same shared memory without that limit.
The slots live as long as the sender's sync backend and are reused by every sync (their pages
stay mapped: no page faults after the first sync).

A slot's pages are reserved when it is created (posix_fallocate): a file that only looked big
enough would kill the sender with SIGBUS at its first write past a full tmpfs (Docker's default
/dev/shm is 64 MB). When /dev/shm has no room the ring falls back to the temp dir: the same
shared page cache for both processes, with a warning.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import tempfile
import uuid
import warnings
import weakref
from collections import OrderedDict

import torch

SHM_DIR = "/dev/shm"
_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # the directory has no room for the slot
log = logging.getLogger(__name__)
_MAPS: OrderedDict[str, tuple[mmap.mmap, torch.Tensor]] = OrderedDict()  # engine side, per process
_MAX_MAPS = 8  # a ring's slots, and the slots of a ring that has since grown


def map_file(path: str, size: int, writable: bool) -> tuple[mmap.mmap, torch.Tensor]:
    fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
    try:
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # fault every page in now, once
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        mm = mmap.mmap(fd, size, flags=flags, prot=prot)
    finally:
        os.close(fd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a read-only mapping: the engine only reads
        return mm, torch.frombuffer(mm, dtype=torch.uint8)


def open_shared(path: str) -> torch.Tensor:
    """The whole slot file as a uint8 tensor (engine side), mapped once per process."""
    if path in _MAPS:
        _MAPS.move_to_end(path)
        return _MAPS[path][1]
    _MAPS[path] = map_file(path, os.path.getsize(path), writable=False)
    while len(_MAPS) > _MAX_MAPS:
        _MAPS.popitem(last=False)  # the sender replaced that slot with a bigger one
    return _MAPS[path][1]


def reserve_file(path: str, size: int) -> None:
    """A new file with all its pages allocated; OSError (ENOSPC...) when its directory has no room."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError:
        _unlink([path])
        raise
    finally:
        os.close(fd)


def _unlink(paths: list[str]) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def _free_mb(root: str) -> int:
    st = os.statvfs(root)
    return st.f_bavail * st.f_frsize >> 20


class ShmRing:
    """The sender's reused slots. slot(i, nbytes) -> (path, writable uint8 tensor of the slot)."""

    def __init__(self, slots: int = 2, roots: tuple[str, ...] | None = None):
        self.roots = roots or (SHM_DIR, tempfile.gettempdir())  # tried in order for each new slot
        self.prefix = f"rlsys-sync-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.slots: list[tuple[str, int, torch.Tensor, mmap.mmap] | None] = [None] * slots
        self._paths: list[str] = []
        self._warned = False  # the fall back from a full /dev/shm is told once
        self._finalizer = weakref.finalize(self, _unlink, self._paths)  # files go with the ring

    def __len__(self) -> int:
        return len(self.slots)

    def slot(self, i: int, nbytes: int) -> tuple[str, torch.Tensor]:
        cur = self.slots[i]
        if cur is None or cur[1] < nbytes:
            if cur is not None:
                _unlink([cur[0]])  # engines keep their mapping of the old file until they drop it
            size = max(nbytes, 1)
            path = self._reserve(f"{self.prefix}-{i}-{len(self._paths)}", size)
            mm, view = map_file(path, size, writable=True)
            cur = self.slots[i] = (path, size, view, mm)
        return cur[0], cur[2]

    def _reserve(self, name: str, size: int) -> str:
        """A new slot file with all its pages allocated, in the first root that has room."""
        full = []
        for root in self.roots:
            path = os.path.join(root, name)
            self._paths.append(path)
            try:
                reserve_file(path, size)
            except OSError as err:
                if err.errno not in _FULL:
                    raise
                full.append(f"{root} ({_free_mb(root)} MB free)")
                continue
            if full and not self._warned:
                self._warned = True
                log.warning("weight sync: no room for a %d MB bucket slot in %s; using %s instead "
                            "(give the node a bigger /dev/shm, e.g. docker --shm-size)", size >> 20,
                            ", ".join(full), root)
            return path
        raise RuntimeError(f"weight sync: no room for a {size >> 20} MB bucket slot in {', '.join(full)}; "
                           "free memory or disk there, or lower rollout.sync_bucket_mb")

    def close(self) -> None:
        self.slots = [None] * len(self.slots)
        self._finalizer()
