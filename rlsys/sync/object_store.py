"""object_store backend: the CPU default and the cross-node fallback.

The sender packs each bucket once into a slot of its shared-memory ring (rlsys/sync/shm.py).
Engines on its node map the slot and read it in place; engines on other nodes get the slot's
bytes as a Ray object (one more copy, into Ray's store, then Ray's transfer). The ring pipelines
the sync: the sender gathers and packs the next buckets while the engines load this one, and
waits for the engines only before reusing a slot, so at most SLOTS buckets exist on the sender.
Each bucket is one engine call; the first of a sync begins it and the last finishes it.

With rollout.cpu_gemm=plain, engines on this node that hold their weights in a shared file skip
the ring: the sender writes those files itself (rlsys/sync/direct_write.py; sync mode only, as it
keeps no snapshot).

An engine that dies during a push leaves it; the others still get every bucket, and the push reports
the dead one (`failed`) so the fleet restarts it. In async mode (trainer.max_staleness >= 1) the
buckets of the pushed version are also kept as Ray objects (`snapshot`: one model copy in the object
store): an engine restarted later is loaded with the version the fleet serves, while the learners
already hold newer weights. In sync mode the learners hold the fleet's version and nothing is kept.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from dataclasses import replace

import torch

from rlsys.sync.bucket import Bucket, bucket_plan, iter_buckets, layout, pack_into, sync_params, wire_views
from rlsys.sync.check import compare_digests, tensor_digest
from rlsys.sync.direct_write import DirectWriter
from rlsys.sync.result import SyncResult

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
        self.dtype, self.ring, self.nodes = sync_dtype(cfg), None, {}
        self.lora = cfg.learner.lora if cfg.learner.lora.rank > 0 else None  # adapters, or merged weights
        self.content = "full" if self.lora is None else "merged" if self.lora.merge else "adapter"
        check = r.check_weights  # sha256 of every tensor sent vs what each engine holds (rlsys/sync/check.py)
        self.checksum = check == "checksum" or (check == "auto" and self.content == "adapter")
        self.direct = DirectWriter() if r.cpu_gemm == "plain" else None  # see rlsys/sync/direct_write.py

    def _buckets(self, model, keep: bool):
        return iter_buckets(model, self.bucket_mb, keep=keep, skip_frozen=self.skip_frozen, dtype=self.dtype,
                            lora=self.lora)

    def push(self, model, engines, version: int, is_sender: bool, keep_snapshot: bool = False) -> SyncResult:
        t0 = time.perf_counter()
        if not is_sender:
            for _ in self._buckets(model, keep=False):  # the gathers are collectives
                pass
            return SyncResult(bytes=0, seconds=time.perf_counter() - t0)
        from rlsys.sync.shm import ShmRing

        shm, same_node = self._transports(engines)
        st, kept = _Stages(len(engines), same_node), []
        if self.direct is not None and not keep_snapshot and all(same_node) and all(shm) and \
                self.direct.ready(engines, [n for n, _ in sync_params(model, self.skip_frozen, self.lora)]):
            out = self.direct.push(self._buckets(model, keep=True), engines, version, st)
            if out is not None:
                return replace(out, seconds=time.perf_counter() - t0, buckets=0, stages=st.summary(), content=self.content,
                               shm_engines=len(engines), ray_engines=0)
        self.ring = self.ring or ShmRing(SLOTS)
        total = len(bucket_plan(sync_params(model, self.skip_frozen, self.lora), self.bucket_mb, self.dtype))
        sync_id, in_flight = uuid.uuid4().hex[:12], [[] for _ in range(len(self.ring))]
        it, nbytes, sent = iter(self._buckets(model, keep=True)), 0, {}
        for k in range(total):
            bucket = st.timed("gather_s", next, it)
            slot = k % len(self.ring)
            st.timed("sender_wait_s", st.collect, in_flight[slot])  # the engines are done with this slot
            wire, order = layout(bucket, self.dtype)
            path, buf = self.ring.slot(slot, wire.nbytes)
            st.timed("pack_s", pack_into, bucket, buf, wire, order)
            if self.checksum:
                st.timed("checksum_s", sent.update, {n: tensor_digest(v) for n, v in zip(wire.names, wire_views(buf, wire))})
            # the first bucket of a sync begins it on the engines, the last finishes it: no other calls
            wire.sync, wire.last, wire.index, wire.checksum = sync_id, k == total - 1, k, self.checksum
            wire.version, wire.lora = version, self._adapter_config()
            del bucket
            nbytes += wire.nbytes
            in_flight[slot] = st.timed("transport_s", _send, wire, path, buf, engines, shm, version, st.alive,
                                       kept if keep_snapshot else None)
        for refs in in_flight:
            st.timed("sender_wait_s", st.collect, refs)
        if total == 0:  # nothing to send (every parameter frozen): the engines still take the version
            now = time.perf_counter()
            st.collect([(engines[i].finish_weight_update.remote(version), i, now) for i in sorted(st.alive)])
        checked = "checksum" if self.checksum and total else "off"
        if checked == "checksum":
            for i in sorted(st.alive):
                compare_digests(sent, st.digests.get(i), i, version)
        return SyncResult(bytes=nbytes, seconds=time.perf_counter() - t0, buckets=total, stages=st.summary(),
                          shm_engines=sum(shm), ray_engines=len(shm) - sum(shm), engine_paths=st.paths,
                          failed=sorted(set(range(len(engines))) - st.alive), snapshot=kept if keep_snapshot else None,
                          content=self.content, checked=checked)

    def _adapter_config(self) -> dict | None:
        """An adapter sync's PEFT config, as vLLM reads it from adapter_config.json (plain JSON types)."""
        if self.content != "adapter":
            return None
        lo = self.lora
        return {"r": lo.rank, "lora_alpha": lo.alpha, "target_modules": list(lo.target_modules), "bias": "none"}

    def _transports(self, engines: list) -> tuple[list[bool], list[bool]]:
        """Per engine: read from the shared-memory slot (else a Ray object), and is it on this node.
        An engine actor never moves, so its node is asked once."""
        import ray

        new = [e for e in engines if e not in self.nodes]
        self.nodes.update(zip(new, ray.get([e.node_id.remote() for e in new])))
        here = ray.get_runtime_context().get_node_id()
        same = [self.nodes[e] == here for e in engines]
        return [self.transport == "shm" or (self.transport == "auto" and s) for s in same], same


def _send(wire: Bucket, path: str, buf: torch.Tensor, engines: list, shm: list[bool], version: int, alive: set,
          kept: list | None) -> list:
    """Start every live engine's load of one packed bucket; (ref, engine index, send time) each.
    kept: a list to keep the bucket in, as a self-contained Ray object (async snapshots)."""
    import ray

    ref = None
    if not all(shm) or kept is not None:  # one Ray object shared by every engine off this node
        ref = ray.put(replace(wire, data=buf[:wire.nbytes].numpy()))
    if kept is not None:
        kept.append(ref)
    now = time.perf_counter()
    return [(e.load_weights.remote(replace(wire, path=path) if s else ref, version), i, now)
            for i, (e, s) in enumerate(zip(engines, shm)) if i in alive]


def load_snapshot(buckets: list, engines: list, version: int) -> SyncResult:
    """Push a kept version (its bucket objects, in order: the last one finishes the sync) into
    `engines`, e.g. one restarted after that push."""
    import ray

    from rlsys.errors import engine_died

    alive = set(range(len(engines)))
    calls = [[(i, engines[i].load_weights.remote(ref, version)) for i in sorted(alive)] for ref in buckets] or \
        [[(i, e.finish_weight_update.remote(version)) for i, e in enumerate(engines)]]
    for bucket_calls in calls:
        for i, ref in bucket_calls:
            try:
                ray.get(ref)
            except Exception as err:
                if not engine_died(err):
                    raise
                alive.discard(i)
    return SyncResult(bytes=0, seconds=0.0, failed=sorted(set(range(len(engines))) - alive))


class _Stages:
    """Seconds per stage of one sync. Sender stages (gather, pack, transport: the Ray calls and any
    Ray object put) are timed here; engine stages (load, kernel re-pack) are the engine's own
    timings (the slowest engine per bucket), and transport adds the wait between a bucket's send
    and its engine starting on it (same-node clocks only). Stages overlap (the pipeline), so their
    sum exceeds the wall time."""

    def __init__(self, engines: int, same_node: list[bool]):
        self.s, self.same_node, self.paths = defaultdict(float), same_node, None
        self.engine_free = [0.0] * engines  # when each engine finished its previous call
        self.alive = set(range(engines))  # engines still in the push (one that died leaves it)
        self.digests: dict[int, dict] = {}  # per engine: sha256 of what it holds, from its sync's last call

    def timed(self, stage: str, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.s[stage] += time.perf_counter() - t

    def collect(self, calls: list) -> None:
        """Wait for engine calls; add their timings (and the sync's path counts, from its last call)."""
        import ray

        from rlsys.errors import engine_died

        replies = []
        for ref, i, sent in calls:
            try:
                replies.append((i, sent, ray.get(ref)))
            except Exception as err:  # an engine that died leaves the push; any other error is raised
                if not engine_died(err):
                    raise
                self.alive.discard(i)
        load, repack, latency = 0.0, 0.0, 0.0
        for i, sent, r in replies:
            load, repack = max(load, r.load_s), max(repack, r.repack_s)
            if r.digests is not None:
                self.digests[i] = r.digests
            if self.same_node[i]:
                latency = max(latency, r.start - max(sent, self.engine_free[i]))
                self.engine_free[i] = r.end
        self.s["engine_load_s"] += load
        self.s["kernel_repack_s"] += repack
        self.s["transport_s"] += max(latency, 0.0)
        self.paths = next((r.paths for _, _, r in replies if r.paths is not None), self.paths)

    def summary(self) -> dict:
        return {k: round(v, 6) for k, v in sorted(self.s.items())}
