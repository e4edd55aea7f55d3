"""What one weight push reports: every sync backend's push returns a SyncResult (rank 0's is the
sync's; ranks that do not send report 0 bytes). It crosses Ray from the learner ranks to the controller."""

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

    @property
    def by_sender(self) -> bool:
        """The sender wrote the engines' weights itself (rollout.cpu_gemm=plain, rlsys/sync/direct_write.py)."""
        return "written_by_sender" in (self.engine_paths or {})
