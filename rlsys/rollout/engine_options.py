"""Engine options that come from the rollout, sync and cluster knobs, and their checks.

One place turns rollout.speculative, rollout.sync_backend and cluster.colocate into vLLM engine
arguments, so RolloutWorker takes them in one line and the rules live next to the mapping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlsys.errors import ConfigError

if TYPE_CHECKING:
    from rlsys.config import RLSysConfig

GPU_BACKENDS = ("nccl", "ipc")  # need CUDA on both sides


def engine_options(cfg: RLSysConfig, model_path: str) -> dict:
    from rlsys.rollout.speculative import speculative_config

    r, opts = cfg.rollout, {}
    spec = speculative_config(cfg, model_path)
    if spec is not None:
        opts["speculative_config"] = spec
        opts["disable_log_stats"] = False  # acceptance counters come from the stat loggers
    if r.sync_backend in GPU_BACKENDS:
        from vllm.config import WeightTransferConfig

        opts["weight_transfer_config"] = WeightTransferConfig(backend=r.sync_backend)
    if cfg.cluster.colocate:
        opts["enable_sleep_mode"] = True
    lora = cfg.learner.lora
    if lora.rank > 0 and not lora.merge:  # adapters arrive from the learners (rlsys/rollout/adapters.py)
        from rlsys.rollout.adapters import max_lora_rank

        # one adapter per batch (the version served); two registered while one replaces the other
        opts.update(enable_lora=True, max_lora_rank=max_lora_rank(lora.rank), max_loras=1, max_cpu_loras=2)
    return opts


def engine_setup_calls(cfg: RLSysConfig) -> list[str]:
    """Worker-extension methods each engine runs once after start-up."""
    calls = ["rlsys_fix_cpu_seeded_discard"]  # no-op on GPU
    if cfg.rollout.speculative != "none":
        calls.append("rlsys_fix_cpu_spec_expand")  # no-op on GPU
    if cfg.rollout.draft_sync:
        calls.append("rlsys_enable_draft_sync")
    if cfg.rollout.cpu_gemm == "plain":
        calls.append("rlsys_plain_cpu_linears")  # no-op on GPU (no packed CPU kernels)
    return calls


def validate_rollout_extras(cfg: RLSysConfig) -> None:
    """Speculative decoding, sync backend and colocation knobs: combinations that cannot work."""
    from rlsys.rollout.speculative import validate_speculative

    r, c = cfg.rollout, cfg.cluster
    validate_speculative(r)
    gpus = c.rollout.gpus > 0 and c.learner.gpus > 0
    if r.sync_backend in GPU_BACKENDS and not gpus:
        _fail("rollout.sync_backend", f"{r.sync_backend} moves CUDA tensors: it needs cluster.rollout.gpus > 0 and "
              f"cluster.learner.gpus > 0 (got {c.rollout.gpus}, {c.learner.gpus}); use object_store on CPU")
    if r.sync_backend == "ipc" and not c.colocate:
        _fail("rollout.sync_backend", "ipc shares GPU memory, so engines and learners must share GPUs: "
              "set cluster.colocate=true (or use nccl for separate GPUs)")
    if r.sync_backend == "nccl" and c.colocate:
        _fail("rollout.sync_backend", "nccl cannot broadcast between processes on one GPU; with "
              "cluster.colocate=true use ipc")
    if not c.colocate:
        return
    if not gpus:
        _fail("cluster.colocate", "colocation shares GPUs (engines sleep while learners train) and vLLM's CPU "
              f"backend has no sleep mode: set cluster.rollout.gpus and cluster.learner.gpus > 0 "
              f"(got {c.rollout.gpus}, {c.learner.gpus}) or cluster.colocate=false")
    if c.rollout.gpus + c.learner.gpus > 1 + 1e-9:
        _fail("cluster.colocate", f"engine and learner share one GPU: cluster.rollout.gpus + cluster.learner.gpus "
              f"must be <= 1, got {c.rollout.gpus} + {c.learner.gpus}")
    if r.tensor_parallel_size != 1 or r.num_engines != cfg.learner.world_size:
        _fail("cluster.colocate", f"one engine per learner GPU: needs rollout.tensor_parallel_size=1 and "
              f"rollout.num_engines == learner.world_size (got {r.tensor_parallel_size}, {r.num_engines}, "
              f"{cfg.learner.world_size})")


def _fail(key: str, msg: str):
    raise ConfigError(f"config key '{key}': {msg}")
