"""What one weight push reports: every sync backend's push returns a SyncResult (rank 0's is the
sync's; ranks that do not send report 0 bytes), which crosses Ray from the learner ranks to the
controller; and what an engine answers to each sync call it gets from the sender (EngineLoad)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SyncResult:
    bytes: int  # bytes the sender moved (0 on ranks that do not send)
    seconds: float  # wall time of the push on this rank
    failed: list[int] = field(default_factory=list)  # positions in `engines` that died during the push
    snapshot: list | None = None  # the version's bucket objects, when kept (async mode, object_store)
    stages: dict[str, float] = field(default_factory=dict)  # busy seconds per stage of the push (they overlap)
    engine_paths: dict[str, int] | None = None  # tensors per load path the engines took (e.g. written_by_sender)
    buckets: int | None = None  # buckets sent (object_store; 0 when the sender wrote the weights itself)
    shm_engines: int | None = None  # engines that read the bucket from shared memory (object_store)
    ray_engines: int | None = None  # engines that got the bucket as a Ray object (object_store)
    content: str = "full"  # what was sent: full (weights) | adapter (LoRA adapters only) | merged (LoRA merged into a copy)
    checked: str = "off"  # what verified the engines after the push: off | probe | checksum (rlsys/sync/check.py)
    probe_gap: float | None = None  # largest mean |engine - learner| log-prob of the probe text over the engines
    probe_shift: float | None = None  # mean |change| of the learners' probe log-probs since the previous sync
    check_s: float = 0.0  # seconds the check took (in `seconds`)

    @property
    def by_sender(self) -> bool:
        """The sender wrote the engines' weights itself (rollout.cpu_gemm=plain, rlsys/sync/direct_write.py)."""
        return "written_by_sender" in (self.engine_paths or {})


@dataclass
class EngineLoad:
    """One engine's answer to a sync call (a bucket, the finish, or the sender's writes); its TP
    workers run in parallel, so the slowest one's times count."""

    tensors: int = 0  # tensors loaded by this call
    load_s: float = 0.0  # seconds loading, kernel repacking excluded
    repack_s: float = 0.0  # seconds repacking CPU kernels' weight layouts
    start: float = 0.0  # perf_counter when the call started (a system-wide clock: the sender on the node compares)
    end: float = 0.0  # perf_counter when it ended
    paths: dict[str, int] | None = None  # tensors per load path, from the call that finished the sync
    written: bool | None = None  # hold_for_writes: the engine took the sender's writes (None for other calls)
    adapter: dict | None = None  # the call that finished an adapter sync: {name, id} of the LoRA adapter it registered
    digests: dict[str, str] | None = None  # the call that finished a checksummed sync: sha256 of what the engine holds, per tensor
