"""object_store backend: buckets travel as Ray objects (shared memory on one node, Ray's transfer
across nodes). The CPU default and the cross-node fallback."""

from __future__ import annotations

import time

from rlsys.sync.bucket import bucket_nbytes, iter_buckets, pack_bucket


class ObjectStoreSync:
    def __init__(self, cfg):
        self.bucket_mb = cfg.rollout.sync_bucket_mb

    def push(self, model, engines, version: int, is_sender: bool) -> dict:
        import ray

        t0, nbytes, in_flight = time.perf_counter(), 0, []
        if is_sender:
            ray.get([e.begin_weight_update.remote(version) for e in engines])
        for bucket in iter_buckets(model, self.bucket_mb, keep=is_sender):
            packed = pack_bucket(bucket)
            del bucket
            nbytes += bucket_nbytes(packed)
            ref = ray.put(packed)
            del packed
            ray.get(in_flight)  # at most two buckets alive at once: bounded memory
            in_flight = [e.load_weights.remote(ref, version) for e in engines]
            del ref
        if is_sender:
            ray.get(in_flight)
            ray.get([e.finish_weight_update.remote(version) for e in engines])
        return {"bytes": nbytes, "seconds": time.perf_counter() - t0}
