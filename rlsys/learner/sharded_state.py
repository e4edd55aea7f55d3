"""A learner rank's part of a checkpoint: FSDP2 model and optimizer state as one sharded
torch.distributed.checkpoint (each rank writes and reads only its own shards), the critic's the
same way, and the rank's RNG and lr-scheduler state. With LoRA only the adapters and their
optimizer state are written (the frozen base is the checkpoint the run started from). Every rank calls these (DCP is collective).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict


def lr_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, schedule: str, total_steps: int):
    """Per RL step: linear warm-up over warmup_steps, then constant or cosine decay to 0 at total_steps."""
    def factor(step: int) -> float:  # step = RL steps done so far
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if schedule == "constant":
            return 1.0
        done = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _modules(worker) -> dict[str, tuple]:
    out = {"policy": (worker.model, worker.optimizer)}
    if worker.critic is not None:
        out["critic"] = (worker.critic, worker.critic_optimizer)
    return out


def _options(model) -> StateDictOptions:
    """Frozen parameters (a LoRA base) never change: the engines and a resume reload them from the
    checkpoint, so a resumable checkpoint holds the trainable ones and the optimizer only."""
    frozen = any(not p.requires_grad for p in model.parameters())
    return StateDictOptions(ignore_frozen_params=frozen, strict=not frozen)


def save_rank(worker, path: str) -> None:
    for name, (model, optim) in _modules(worker).items():
        model_sd, optim_sd = get_state_dict(model, optim, options=_options(model))
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(Path(path) / name))
    rng = {"torch": torch.get_rng_state(), "scheduler": worker.scheduler.state_dict()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    torch.save(rng, Path(path) / f"rank_{worker.rank}.pt")


def load_rank(worker, path: str) -> None:
    for name, (model, optim) in _modules(worker).items():
        if not (Path(path) / name).is_dir():
            raise FileNotFoundError(f"checkpoint {path} has no {name} state (was it made with algorithm.critic.enabled "
                                    f"set the same way?)")
        model_sd, optim_sd = get_state_dict(model, optim, options=_options(model))
        state = {"model": model_sd, "optim": optim_sd}
        dcp.load(state, checkpoint_id=str(Path(path) / name))
        set_state_dict(model, optim, model_state_dict=state["model"], optim_state_dict=state["optim"],
                       options=_options(model))
    rng = torch.load(Path(path) / f"rank_{worker.rank}.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    worker.scheduler.load_state_dict(rng["scheduler"])
