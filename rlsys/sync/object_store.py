"""object_store backend: buckets travel as Ray objects (shared memory on one node, Ray's transfer
across nodes). The CPU default and the cross-node fallback."""

from __future__ import annotations

import time

from rlsys.sync.bucket import bucket_nbytes, pack_bucket


class ObjectStoreSync:
    def push(self, buckets, engines, version: int, is_sender: bool) -> dict:
        import ray

        t0, nbytes, in_flight = time.perf_counter(), 0, []
        if is_sender:
            ray.get([e.begin_weight_update.remote(version) for e in engines])
        for bucket in buckets:
            if not is_sender:
                continue  # non-senders still iterate: their shards join each gather
            packed = pack_bucket(bucket)
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
