"""Weight-sync backends: learner rank 0 streams full parameters, in buckets, to the fleet.

A backend is a class built once per learner rank from the config, with one method:
    push(model, engines, version, is_sender, keep_snapshot=False) -> SyncResult (rlsys/sync/result.py:
        bytes, seconds, the engines that died during the push, and that version's buckets when
        keep_snapshot (async mode) and the backend can keep them: object_store)
`model` is the (FSDP-sharded) policy; every learner rank calls push (the gathers are
collectives) and only the sender moves data, in buckets of rollout.sync_bucket_mb.
  object_store  Ray objects (CPU default, cross-node fallback)          rlsys/sync/object_store.py
  nccl          vLLM's NCCL weight transfer, engines on other GPUs       rlsys/sync/native.py
  ipc           vLLM's CUDA-IPC weight transfer, colocated engines       rlsys/sync/native.py
Register new backends in SYNC_BACKENDS.
"""

from __future__ import annotations

from rlsys.sync.native import IpcSync, NcclSync
from rlsys.sync.object_store import ObjectStoreSync

SYNC_BACKENDS = {"object_store": ObjectStoreSync, "nccl": NcclSync, "ipc": IpcSync}
