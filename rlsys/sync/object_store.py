"""object_store backend: the CPU default and the cross-node fallback.

The sender packs each bucket once into a slot of its shared-memory ring (rlsys/sync/shm.py).
Engines on its node map the slot and read it in place; engines on other nodes get the slot's
bytes as a Ray object (one more copy, into Ray's store, then Ray's transfer). Two slots pipeline
the sync: the sender gathers and packs bucket k+1 while the engines load bucket k, and waits for
the engines only before reusing a slot, so at most two buckets exist on the sender.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch

from rlsys.sync.bucket import iter_buckets, layout, pack_into

SLOTS = 3  # ring slots: the sender runs up to SLOTS - 1 buckets ahead of the engines

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def sync_dtype(cfg) -> torch.dtype | None:
    """The dtype weights travel in: auto = the engine's (model.dtype); an fp32 learner feeding a
    bf16 engine then sends half the bytes, cast during the pack copy for free."""
    name = cfg.rollout.sync_dtype
    return _DTYPES[cfg.model.dtype if name == "auto" else name]


class ObjectStoreSync:
    def __init__(self, cfg):
        r = cfg.rollout
        self.bucket_mb, self.transport, self.skip_frozen = r.sync_bucket_mb, r.sync_transport, not r.sync_frozen
        self.dtype, self.ring = sync_dtype(cfg), None

    def _buckets(self, model, keep: bool):
        return iter_buckets(model, self.bucket_mb, keep=keep, skip_frozen=self.skip_frozen, dtype=self.dtype)

    def push(self, model, engines, version: int, is_sender: bool) -> dict:
        t0 = time.perf_counter()
        if not is_sender:
            for _ in self._buckets(model, keep=False):  # the gathers are collectives
                pass
            return {"bytes": 0, "seconds": time.perf_counter() - t0}
        import ray

        from rlsys.sync.shm import ShmRing

        self.ring = self.ring or ShmRing(SLOTS)
        here = ray.get_runtime_context().get_node_id()
        nodes = ray.get([e.begin_weight_update.remote(version) for e in engines])
        shm = [self.transport == "shm" or (self.transport == "auto" and n == here) for n in nodes]
        st = _Stages(len(engines), same_node=[n == here for n in nodes])
        in_flight: list[list] = [[] for _ in range(len(self.ring))]
        it, k, nbytes = iter(self._buckets(model, keep=True)), 0, 0
        while (bucket := st.timed("gather_s", next, it, None)) is not None:
            slot = k % len(self.ring)
            st.timed("sender_wait_s", st.collect, in_flight[slot])  # the engines are done with this slot
            meta = layout(bucket, self.dtype)
            path, buf = self.ring.slot(slot, meta["nbytes"])
            wire = st.timed("pack_s", pack_into, bucket, buf, meta)
            del bucket
            nbytes += wire["nbytes"]
            in_flight[slot] = st.timed("transport_s", _send, wire, path, buf, engines, shm, version)
            k += 1
        for refs in in_flight:
            st.timed("sender_wait_s", st.collect, refs)
        paths = st.collect([(e.finish_weight_update.remote(version), i, time.perf_counter()) for i, e in enumerate(engines)])
        seconds = time.perf_counter() - t0
        return {"bytes": nbytes, "seconds": seconds, "buckets": k, "stages": st.summary(),
                "shm_engines": sum(shm), "ray_engines": len(shm) - sum(shm), "engine_paths": paths}


def _send(wire: dict, path: str, buf: torch.Tensor, engines: list, shm: list[bool], version: int) -> list:
    """Start every engine's load of one packed bucket; (ref, engine index, send time) each."""
    import ray

    ref = None
    if not all(shm):  # one Ray object shared by every engine off this node
        ref = ray.put({**wire, "data": buf[:wire["nbytes"]].numpy()})
    now = time.perf_counter()
    return [(e.load_weights.remote({**wire, "path": path} if s else ref, version), i, now)
            for i, (e, s) in enumerate(zip(engines, shm))]


class _Stages:
    """Seconds per stage of one sync. Sender stages (gather, pack, transport: the Ray calls and any
    Ray object put) are timed here; engine stages (load, kernel re-pack) are the engine's own
    timings (the slowest engine per bucket), and transport adds the wait between a bucket's send
    and its engine starting on it (same-node clocks only). Stages overlap (the pipeline), so their
    sum exceeds the wall time."""

    def __init__(self, engines: int, same_node: list[bool]):
        self.s, self.same_node = defaultdict(float), same_node
        self.engine_free = [0.0] * engines  # when each engine finished its previous call

    def timed(self, stage: str, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.s[stage] += time.perf_counter() - t

    def collect(self, calls: list) -> dict | None:
        """Wait for engine calls; add their timings. Returns the first reply's path counts, if any."""
        import ray

        replies = ray.get([ref for ref, _, _ in calls])
        load, repack, latency = 0.0, 0.0, 0.0
        for (_, i, sent), r in zip(calls, replies):
            load, repack = max(load, r["load_s"]), max(repack, r["repack_s"])
            if self.same_node[i]:
                latency = max(latency, r["start"] - max(sent, self.engine_free[i]))
                self.engine_free[i] = r["end"]
        self.s["engine_load_s"] += load
        self.s["kernel_repack_s"] += repack
        self.s["transport_s"] += max(latency, 0.0)
        return replies[0].get("paths") if replies else None

    def summary(self) -> dict:
        return {k: round(v, 6) for k, v in sorted(self.s.items())}
