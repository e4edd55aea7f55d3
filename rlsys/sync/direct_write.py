"""The sender writing engines' weights itself (rollout.cpu_gemm=plain, engines on its node).

An engine in plain mode keeps the parameters a sync writes in one shared-memory file and says
where each HF tensor goes (rlsys/rollout/shared_weights.py). The sender maps that file once (and
unlinks it: the two mappings keep it, nothing is left behind when either side dies), then per
sync: every engine enters one call that holds it between engine steps and sets the flag at the
head of its file; the sender gathers the parameters in their buckets as usual and copies each one
straight into every engine's file (the sync's one copy: no bucket slot, no engine-side load);
then it sets the flags to written and the engines take the new version. Used only where every
engine is on the sender's node and no snapshot of the version is kept (sync mode); an engine
whose file changed (restarted, or a new sender) sends the sync back to the bucket path.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from rlsys.rollout.shared_weights import ABORTED, HELD, WRITTEN
from rlsys.sync.bucket import _DTYPES
from rlsys.sync.result import SyncResult

FORGET_AFTER = 4  # pushes an engine may miss (a restarted one's catch-up goes to it alone) before its file is unmapped
TIMEOUT_S = 600.0  # an engine held this long gives up: the push reports it failed, the fleet restarts it


class DirectWriter:
    def __init__(self):
        self.targets: dict[object, _Target] = {}  # engine -> its mapped weights file
        self.pushes, self.seen = 0, {}  # engine -> the last push it was in

    def ready(self, engines: list, names: list[str]) -> bool:
        """Can the sender write every engine's weights for these names? Engines not ready are asked
        again at the next sync (one is ready after its first plain-mode sync)."""
        import ray

        from rlsys.sync.shm import map_file

        self.pushes += 1
        self.seen.update(dict.fromkeys(engines, self.pushes))
        for e in [e for e in self.seen if self.pushes - self.seen[e] > FORGET_AFTER]:
            del self.seen[e]  # an engine that died outside a push: unmap its file
            self.targets.pop(e, None)
        new = [e for e in engines if e not in self.targets]
        for e, d in zip(new, ray.get([e.shared_weights.remote() for e in new])):
            if d is not None:
                mm, buf = map_file(d["path"], d["nbytes"], writable=True)
                os.unlink(d["path"])
                views = {dt: buf.view(_DTYPES[dt]) for dt in {w[1] for ws in d["writes"].values() for w in ws}}
                self.targets[e] = _Target(d["path"], mm, buf[:8].view(torch.int64), views, d["writes"])
        return all(e in self.targets and set(names) <= self.targets[e].writes.keys() for e in engines)

    def push(self, buckets, engines: list, version: int, stages) -> SyncResult | None:
        """Hold every engine, write the buckets into their files, release them (the caller fills in
        the timings). None (nothing iterated, no engine changed) when an engine's file is not the one
        mapped here."""
        import ray

        flags = [self.targets[e].flag for e in engines]
        for f in flags:
            f[0] = 0
        calls = {i: e.hold_for_writes.remote(self.targets[e].path, version, os.getpid(), TIMEOUT_S)
                 for i, e in enumerate(engines)}
        try:
            held, stale = stages.timed("hold_s", self._wait_held, flags, calls)
            if stale:
                raise _Stale
            nbytes, tensors = 0, 0
            for bucket in _timed_iter(stages, "gather_s", buckets):
                nbytes += stages.timed("write_s", self._write, bucket, [self.targets[engines[i]] for i in sorted(held)])
                tensors += len(bucket)
        except BaseException as err:  # let the engines go at once (their version stays), and forget them
            for f in flags:
                f[0] = ABORTED
            ray.wait(list(calls.values()), num_returns=len(calls))
            for e in engines:
                self.targets.pop(e, None)
            if isinstance(err, _Stale):
                return None
            raise
        for i in held:
            flags[i][0] = WRITTEN
        failed = stages.timed("release_s", _collect, calls, held)  # the engines take the version
        for i in set(range(len(engines))) - held | failed:
            self.targets.pop(engines[i], None)
        return SyncResult(bytes=nbytes, seconds=0.0, failed=sorted(set(range(len(engines))) - held | failed),
                          engine_paths={"written_by_sender": tensors})

    @staticmethod
    def _wait_held(flags: list, calls: dict) -> tuple[set, bool]:
        """Engines that are held; True when one answered without holding (its file is not ours).
        An engine that died leaves the push."""
        import ray

        from rlsys.errors import engine_died

        held, out, stale = set(), set(), False
        while len(held) + len(out) < len(calls):
            held |= {i for i in calls if i not in out and int(flags[i][0]) == HELD}
            waiting = [calls[i] for i in calls if i not in held and i not in out]
            done, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0) if waiting else ([], [])
            for i in [i for i in calls if calls[i] in done]:
                out.add(i)
                try:
                    stale |= not ray.get(calls[i]).written
                except Exception as err:
                    if not engine_died(err):
                        raise
            time.sleep(50e-6)
        return held, stale

    @staticmethod
    def _write(bucket: list, targets: list) -> int:
        nbytes = 0
        for name, t in bucket:
            t = t if t.is_contiguous() else t.contiguous()
            for target in targets:
                for off, dtype, shape, stride, *src in target.writes[name]:
                    view = target.views[dtype]
                    dst = view.as_strided(shape, stride, off // view.element_size())
                    if len(src) == 1:  # a fill (an embedding's padded rows)
                        dst.fill_(src[0])
                        continue
                    soff, sshape, sstride = src
                    dst.copy_(t.as_strided(sshape, sstride, t.storage_offset() + soff))
                    nbytes += dst.element_size() * dst.numel()
        return nbytes


class _Stale(Exception):
    """An engine's weights file is not the one mapped here: this sync takes the bucket path."""


@dataclass
class _Target:
    path: str  # the engine's weights file (unlinked once mapped here; the engine checks it by name)
    mm: object  # the mapping, kept open
    flag: torch.Tensor  # the int64 at the file's head: HELD (engine) -> WRITTEN or ABORTED (sender)
    views: dict  # dtype name -> the whole file viewed in it
    writes: dict  # HF name -> its recorded writes (shared_weights.py)


def _collect(calls: dict, held: set) -> set:
    """Wait for the held engines to take the version; the ones that died or gave up meanwhile."""
    import ray

    from rlsys.errors import engine_died

    failed = set()
    for i in sorted(held):
        try:
            if not ray.get(calls[i]).written:
                failed.add(i)
        except Exception as err:
            if not engine_died(err):
                raise
            failed.add(i)
    return failed


def _timed_iter(stages, stage: str, it):
    it = iter(it)
    while True:
        try:
            yield stages.timed(stage, next, it)
        except StopIteration:
            return


