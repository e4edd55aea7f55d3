"""object_store backend: buckets travel as Ray objects (shared memory on one node, Ray's transfer
across nodes). The CPU default and the cross-node fallback.

An engine that dies during a push leaves it; the others still get every bucket, and the push reports
the dead one (`failed`) so the fleet restarts it. In async mode (trainer.max_staleness >= 1) the
buckets of the pushed version are kept (`snapshot`): an engine restarted later is loaded with the
version the fleet serves, while the learners already hold newer weights (one model copy in the
object store; in sync mode the learners hold the fleet's version and nothing is kept).
"""

from __future__ import annotations

import time

from rlsys.sync.bucket import bucket_nbytes, iter_buckets, pack_bucket


class ObjectStoreSync:
    def __init__(self, cfg):
        self.bucket_mb = cfg.rollout.sync_bucket_mb

    def push(self, model, engines, version: int, is_sender: bool, keep_snapshot: bool = False) -> dict:
        import ray

        t0, nbytes, in_flight, kept = time.perf_counter(), 0, {}, []
        alive = set(range(len(engines)))
        if is_sender:
            settle({i: engines[i].begin_weight_update.remote(version) for i in alive}, alive)
        for bucket in iter_buckets(model, self.bucket_mb, keep=is_sender):
            packed = pack_bucket(bucket)
            del bucket
            nbytes += bucket_nbytes(packed)
            ref = ray.put(packed)
            del packed
            settle(in_flight, alive)  # at most two buckets alive at once (unless kept): bounded memory
            in_flight = {i: engines[i].load_weights.remote(ref, version) for i in alive}
            if keep_snapshot:
                kept.append(ref)
            del ref
        if is_sender:
            settle(in_flight, alive)
            settle({i: engines[i].finish_weight_update.remote(version) for i in alive}, alive)
        out = {"bytes": nbytes, "seconds": time.perf_counter() - t0, "failed": sorted(set(range(len(engines))) - alive)}
        return {**out, "snapshot": kept} if kept else out


def settle(calls: dict, alive: set) -> None:
    """Wait for each engine's call; an engine that died leaves `alive` (any other error is raised)."""
    import ray

    from rlsys.errors import engine_died

    for i, ref in calls.items():
        try:
            ray.get(ref)
        except Exception as err:
            if not engine_died(err):
                raise
            alive.discard(i)


def load_snapshot(buckets: list, engines: list, version: int) -> dict:
    """Push a kept version (its bucket refs) into `engines`, e.g. one restarted after that push."""
    alive = set(range(len(engines)))
    settle({i: engines[i].begin_weight_update.remote(version) for i in alive}, alive)
    for ref in buckets:
        settle({i: engines[i].load_weights.remote(ref, version) for i in alive}, alive)
    settle({i: engines[i].finish_weight_update.remote(version) for i in alive}, alive)
    return {"bytes": 0, "seconds": 0.0, "failed": sorted(set(range(len(engines))) - alive)}
