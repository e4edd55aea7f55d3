"""nccl and ipc backends: vLLM's own weight-transfer engines (vllm/distributed/weight_transfer).

GPU only (not exercised on the CPU machine this was written on). The learner side is vLLM's
trainer engine over a ModuleSource of the FSDP model: every rank iterates it (the gathers are
collectives), rank 0 streams the full tensors packed into rollout.sync_bucket_mb buffers, so no
second full copy of the model exists on the learner. The engine side is the RolloutWorker's
`weight_transfer` method forwarding to vLLM's LLM (built with a WeightTransferConfig, see
rlsys/rollout/engine_options.py). FleetClient is vLLM's client protocol over our engine actors.
"""

from __future__ import annotations

import time

import torch

from rlsys.sync.result import SyncResult

NUM_BUFFERS = 2  # packed buffers in flight per transfer (double buffering)


class FleetClient:
    """vLLM's VLLMWeightSyncClient over RolloutWorker actors: every call fans out to all engines.

    NCCL ranks: the trainer is rank 0 and engine i's TP ranks follow at 1 + i * tp, so the init
    payload's rank_offset is rewritten per engine (vLLM's own Ray client sends one to all).
    """

    def __init__(self, engines: list, ranks_per_engine: int):
        self.engines, self.tp = engines, ranks_per_engine
        self.version, self.draft = 0, False

    def _all(self, method: str, payloads: list | None = None) -> None:
        import ray

        payloads = payloads or [None] * len(self.engines)
        ray.get([e.weight_transfer.remote(method, p) for e, p in zip(self.engines, payloads)])

    def init_weight_transfer_engine(self, init_info: dict) -> None:
        self._all("init_weight_transfer_engine", [{"init_info": engine_init_info(init_info, i, self.tp)}
                                                  for i in range(len(self.engines))])

    def start_weight_update(self) -> None:
        self._all("start_draft_weight_update" if self.draft else "start_weight_update")

    def update_weights(self, update_info) -> None:
        self._all("update_weights", [{"update_info": update_info}] * len(self.engines))

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        import ray

        self._all("finish_weight_update")
        if not self.draft:
            ray.get([e.set_version.remote(self.version) for e in self.engines])


def engine_init_info(init_info: dict, engine_index: int, ranks_per_engine: int) -> dict:
    """The init payload for one engine: NCCL payloads get this engine's first rank."""
    if "rank_offset" not in init_info:
        return init_info  # ipc: no ranks
    return {**init_info, "rank_offset": init_info["rank_offset"] + engine_index * ranks_per_engine}


def sync_source(model, skip_frozen: bool, dtype):
    """vLLM's WeightSource over the parameters a sync sends (rlsys.sync.bucket.sync_params: frozen
    ones stay home), cast to the wire dtype: the object_store backend's knobs, for vLLM's engines."""
    from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource, materialize_full_tensor

    from rlsys.sync.bucket import sync_params, wire_dtype

    class SyncSource(WeightSource):
        def __init__(self):
            self.params = sync_params(model, skip_frozen)

        def metadata(self):
            return [ParamMeta(n, wire_dtype(p, dtype), tuple(p.shape)) for n, p in self.params]

        def __iter__(self):
            for n, p in self.params:
                yield n, materialize_full_tensor(p).detach().to(wire_dtype(p, dtype))

    return SyncSource()


def source_bytes(source) -> int:
    return sum(torch.Size(m.shape).numel() * torch.empty((), dtype=m.dtype).element_size() for m in source.metadata())


class NativeSync:
    """Shared by nccl and ipc: build the trainer engine once, then send_weights every sync."""

    backend = ""

    def __init__(self, cfg):
        from rlsys.sync.object_store import sync_dtype

        self.cfg, self.engine, self.client = cfg, None, None
        self.skip_frozen, self.dtype = not cfg.rollout.sync_frozen, sync_dtype(cfg)

    def _init_info(self, rank: int, engines: list):
        raise NotImplementedError

    def push(self, model, engines, version: int, is_sender: bool, keep_snapshot: bool = False) -> SyncResult:
        """Same interface and knobs as object_store; vLLM's engine gathers, packs, sends and loads
        (one stage here: "transfer_s"). keep_snapshot is not supported here (the fleet then has no
        snapshot: async engine restarts fail clearly)."""
        from vllm.distributed.weight_transfer import WeightTransferTrainerFactory

        import torch.distributed as dist

        t0 = time.perf_counter()
        rank = dist.get_rank() if dist.is_initialized() else 0
        source = sync_source(model, self.skip_frozen, self.dtype)  # learner.reset() replaces the model
        if self.engine is None:
            self.client = FleetClient(engines, self.cfg.rollout.tensor_parallel_size)
            self.engine = WeightTransferTrainerFactory.trainer_init(
                self._init_info(rank, engines), client=self.client, source=source)
        self.engine.source = source
        self.client.version, self.client.draft = version, False
        self.engine.send_weights()
        nbytes = source_bytes(source) * is_sender
        if self.cfg.rollout.draft_sync:  # second pass into each engine's draft model
            self.client.draft = True
            self.engine.send_weights()
            nbytes *= 2
        seconds = time.perf_counter() - t0
        return SyncResult(bytes=nbytes, seconds=seconds, stages={"transfer_s": seconds})


class NcclSync(NativeSync):
    backend = "nccl"

    def _init_info(self, rank: int, engines: list):
        import torch.distributed as dist

        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        from rlsys.runtime.net import free_address

        addr = [free_address() if rank == 0 else None]
        if dist.is_initialized():
            dist.broadcast_object_list(addr, src=0)  # every rank builds the same init info
        world = 1 + len(engines) * self.cfg.rollout.tensor_parallel_size
        return NCCLTrainerInitInfo(master_address=addr[0][0], master_port=addr[0][1], world_size=world, rank=rank,
                                   packed=True, packed_buffer_size_bytes=self.cfg.rollout.sync_bucket_mb * 2**20,
                                   packed_num_buffers=NUM_BUFFERS)


class IpcSync(NativeSync):
    backend = "ipc"

    def _init_info(self, rank: int, engines: list):
        from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerInitInfo

        # packed: one reused bucket-sized buffer; unpacked would pin a full copy until the update ends
        return IPCTrainerInitInfo(rank=rank, packed=True, packed_buffer_size_bytes=self.cfg.rollout.sync_bucket_mb * 2**20)
