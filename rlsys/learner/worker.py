"""LearnerWorker: one rank of the FSDP2 policy group (gloo on CPU, nccl on GPU).

A plain class: Ray wraps it as an actor (rlsys/learner/group.py), and it runs just as well in a
torchrun process or a single process, which is how GPU benchmarks use it without Ray.
"""

from __future__ import annotations

import math
import socket
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlsys.config import RLSysConfig
from rlsys.data.batch import RolloutBatch
from rlsys.learner.logprobs import pack, pad_per_token, token_logprobs
from rlsys.learner.objectives import AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES, Denominators, LossInputs

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def free_address() -> tuple[str, int]:
    """This host's address and a free TCP port, for rank 0's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    try:
        import ray

        host = ray.util.get_node_ip_address() if ray.is_initialized() else "127.0.0.1"
    except ImportError:
        host = "127.0.0.1"
    return host, port


class LearnerWorker:
    def __init__(self, cfg: RLSysConfig, model_path: str, rank: int, world_size: int):
        self.cfg, self.model_path, self.rank, self.world_size = cfg, model_path, rank, world_size
        torch.manual_seed(cfg.trainer.seed + rank)

    def address(self) -> tuple[str, int]:
        return free_address()

    def setup(self, master_addr: str, master_port: int) -> None:
        backend = self.cfg.learner.backend
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://{master_addr}:{master_port}",
                                rank=self.rank, world_size=self.world_size)
        self.device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=DTYPES[self.cfg.model.dtype])
        model.to(self.device)
        for layer in model.model.layers:  # one FSDP unit per decoder layer, the root holds the rest
            fully_shard(layer)
        fully_shard(model)
        self.model = model
        a = self.cfg.algorithm
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay,
                                           betas=(0.9, 0.999))
        self.pad_id = AutoTokenizer.from_pretrained(self.model_path).pad_token_id or 0

    # ---- training ------------------------------------------------------------------------------
    def train_step(self, shard: RolloutBatch, denom: Denominators, num_micro: int) -> dict:
        """One optimizer step on this rank's shard, in exactly num_micro micro-batches.

        Every rank runs the same number of forward/backward passes (FSDP's collectives pair up);
        a rank with too few samples repeats one with loss scale 0.
        """
        t0 = time.perf_counter()
        self.model.train()
        parts = np.array_split(np.arange(len(shard)), num_micro)
        totals: dict[str, float] = {}
        for i, idx in enumerate(parts):
            scale = 1.0 if len(idx) else 0.0
            mb = shard.select(idx if len(idx) else np.array([0]))
            self.model.set_requires_gradient_sync(i == num_micro - 1)
            loss, stats = self._micro_batch_loss(mb, denom)
            (loss * scale * self.world_size).backward()  # FSDP averages grads over ranks
            for k, v in stats.items():
                totals[k] = totals.get(k, 0.0) + v * scale
        grad_norm = self._clip_grad_norm()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        totals["grad_norm"] = grad_norm
        totals["train_seconds"] = time.perf_counter() - t0
        return totals

    def _micro_batch_loss(self, mb: RolloutBatch, denom: Denominators):
        a = self.cfg.algorithm
        ids, attn, mask = pack(mb.prompt_token_ids, mb.response_token_ids, self.pad_id)
        ids, attn, mask = ids.to(self.device), attn.to(self.device), mask.to(self.device)
        logp, entropy = token_logprobs(self.model, ids, attn, self.cfg.rollout.temperature, with_entropy=True)
        per_token = lambda cols: pad_per_token(cols, mask.cpu()).to(self.device)  # noqa: E731
        # Samples an estimator dropped (PSR drops the wrong ones, NSR the correct ones) leave the loss.
        loss_mask = mask if mb.loss_mask is None else mask & torch.as_tensor(mb.loss_mask, device=self.device)[:, None]
        logp_ref = per_token(mb.ref_logprobs)
        x = LossInputs(logp=logp, logp_old=logp.detach(), advantages=per_token(mb.advantages), mask=loss_mask,
                       logp_ref=logp_ref)
        loss_tok, stats = POLICY_LOSSES[a.loss](x, clip_low=a.clip_low, clip_high=a.clip_high, dual_clip=a.dual_clip)
        if a.kl_coef and a.kl_placement == "loss":
            loss_tok = loss_tok + a.kl_coef * KL_ESTIMATORS[a.kl_estimator](logp, logp_ref)
        if a.entropy_coef:
            loss_tok = loss_tok - a.entropy_coef * entropy
        loss = AGGREGATIONS[a.loss_agg](loss_tok, loss_mask, denom)
        beh, m = per_token(mb.behaviour_logprobs), mask.float()
        stats.update({
            "loss": loss.item(),
            "tokens": m.sum().item(),
            "entropy_sum": (entropy.detach() * m).sum().item(),
            "kl_sum": (KL_ESTIMATORS["k3"](logp.detach(), logp_ref) * m).sum().item(),  # metric: k3 value
            "mismatch_sum": ((beh - logp.detach()).abs() * m).sum().item(),
            "mismatch_max": ((beh - logp.detach()).abs() * m).max().item(),
        })
        return loss, stats

    def _clip_grad_norm(self) -> float:
        max_norm = self.cfg.algorithm.grad_clip or math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if isinstance(norm, DTensor):
            norm = norm.full_tensor()
        return float(norm)

    @torch.no_grad()
    def full_logprobs(self, token_ids: list[list[int]]) -> list[np.ndarray]:
        """Next-token log-prob distributions [T-1, V] at temperature 1 (parity checks with engines).

        A collective under FSDP: every rank must call it with the same input.
        """
        self.model.eval()
        out = []
        for seq in token_ids:
            ids = torch.tensor([seq], dtype=torch.long, device=self.device)
            logits = self.model(input_ids=ids).logits[0, :-1].float()
            out.append(torch.log_softmax(logits, -1).double().cpu().numpy())
        return out

    # ---- weights out ---------------------------------------------------------------------------
    def iter_weight_buckets(self, bucket_mb: int):
        """Full parameters under their HF names, gathered one at a time into ~bucket_mb buckets.

        Every rank must iterate (the gathers are collectives); only one bucket of full tensors
        exists at a time, never a second full copy of the model.
        """
        limit, bucket, size = bucket_mb * 2**20, [], 0
        for name, param in self.model.named_parameters():
            full = param.full_tensor() if isinstance(param, DTensor) else param
            full = full.detach().to("cpu", copy=True)
            bucket.append((name, full))
            size += full.numel() * full.element_size()
            if size >= limit:
                yield bucket
                bucket, size = [], 0
        if bucket:
            yield bucket

    def push_weights(self, engines: list, version: int) -> dict:
        from rlsys.sync import SYNC_BACKENDS

        backend = SYNC_BACKENDS[self.cfg.rollout.sync_backend]()
        return backend.push(self.iter_weight_buckets(self.cfg.rollout.sync_bucket_mb), engines, version,
                            is_sender=self.rank == 0)

    def save_checkpoint(self, path: str) -> str | None:
        """HF-format checkpoint (weights + config + tokenizer) written by rank 0."""
        sd = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.rank == 0:
            Path(path).mkdir(parents=True, exist_ok=True)
            self.model.save_pretrained(path, state_dict=sd, safe_serialization=True)
            AutoTokenizer.from_pretrained(self.model_path).save_pretrained(path)
        dist.barrier()
        return path if self.rank == 0 else None

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

