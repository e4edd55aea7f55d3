"""LearnerWorker: one rank of the FSDP2 policy group (gloo on CPU, nccl on GPU).

A plain class: Ray wraps it as an actor (rlsys/learner/group.py), and it runs just as well in a
torchrun process or a single process, which is how GPU benchmarks use it without Ray.
"""

from __future__ import annotations

import math
import socket
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.tensor import DTensor
from transformers import AutoTokenizer

from rlsys.learner.role_config import LearnerRoleConfig
from rlsys.data.batch import RolloutBatch
from rlsys.learner.build import build_policy, mixed_precision_policy
from rlsys.learner.sharded_state import load_rank, lr_scheduler, save_rank
from rlsys.learner.critic import ValueModel
from rlsys.learner.logprobs import DTYPES, pad_per_token, unpad_per_token
from rlsys.learner.microbatch import micro_batches
from rlsys.learner.packing import ModelInputs, model_inputs, resolve_attn_implementation, response_logprobs
from rlsys.learner.objective import combine, load_plugins, reductions
from rlsys.learner.losses import (AGGREGATIONS, KL_ESTIMATORS, REGULARISERS, Denominators, LossInputs,
                                     correction_mode, correction_weights, divergence_penalty)
from rlsys.learner.spec import knob_values, spec
from rlsys.runtime.memory import peak_gb, reset_peak
from rlsys.runtime.net import free_address
from rlsys.seeds import rank_seed
from rlsys.sync.result import SyncResult
from rlsys.runtime.threads import set_threads, stage_threads

class LearnerWorker:
    def __init__(self, cfg: LearnerRoleConfig, model_path: str, rank: int, world_size: int):
        from rlsys.runtime.cluster import pin_to_cpus

        pin_to_cpus("RLSYS_LEARNER_CPUS")
        self.cfg, self.model_path, self.rank, self.world_size = cfg, model_path, rank, world_size
        torch.manual_seed(rank_seed(cfg.seed, rank))

    def ping(self) -> bool:
        """Liveness probe (rlsys/runtime/deadlines.py), answered in its own concurrency group."""
        return True

    def address(self) -> tuple[str, int]:
        return free_address()

    def setup(self, master_addr: str, master_port: int) -> None:
        backend = self.cfg.learner.backend
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        timeout = {"timeout": timedelta(seconds=self.cfg.collective_timeout_s)} if self.cfg.collective_timeout_s else {}
        dist.init_process_group(backend, init_method=f"tcp://{master_addr}:{master_port}",
                                rank=self.rank, world_size=self.world_size, **timeout)
        self.device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        self.pad_id = AutoTokenizer.from_pretrained(self.model_path).pad_token_id or 0
        self.threads = self._threads()
        set_threads(self.threads)
        self.reset(self.cfg)

    def _threads(self) -> int:
        """torch threads: the learners train alone in the loop, so the ranks on a node share its cores
        (cluster.threads=auto) or each keeps its placement's CPUs (placement)."""
        hosts = [None] * self.world_size
        dist.all_gather_object(hosts, socket.gethostname())
        peers = sum(h == hosts[self.rank] for h in hosts)
        return stage_threads(self.cfg.threads, self.cfg.cpus, alone=True, peers_on_node=peers)

    def reset(self, cfg: LearnerRoleConfig) -> None:
        """(Re)load the base weights, a fresh optimizer and, if asked, a fresh critic.

        Lets one learner group run several objectives in turn (the preset tests share it).
        """
        self.cfg, a, dtype = cfg, cfg.algorithm, DTYPES[cfg.model.dtype]
        load_plugins(a.modules)  # terms registered by the user's files, in this process too
        lc = cfg.learner
        self.model = model = build_policy(self.model_path, cfg, self.device)
        trainable = [p for p in model.parameters() if p.requires_grad]  # LoRA: the adapters only
        self.optimizer = torch.optim.AdamW(trainable, lr=a.optim.lr, weight_decay=a.optim.weight_decay)
        self.critic = self.critic_optimizer = None
        if a.critic.enabled:
            attn = resolve_attn_implementation(lc.attn_implementation, self.device, lc.packed)
            self.critic = ValueModel(self.model_path, dtype, attn).to(self.device).shard(
                mixed_precision_policy(lc.mixed_precision, self.device))
            self.critic_optimizer = torch.optim.AdamW(self.critic.parameters(), lr=a.critic.lr)
        self.scheduler = lr_scheduler(self.optimizer, a.optim.warmup_steps, a.optim.schedule, cfg.total_steps)
        self.reference = None  # the frozen initial policy, sharded like the policy (cluster.reference_with_learners)
        if cfg.reference and lc.lora.rank == 0:  # with LoRA the reference is the policy with its adapters off
            self.reference = build_policy(self.model_path, cfg, self.device).eval().requires_grad_(False)

    # ---- training ------------------------------------------------------------------------------
    def train_step(self, shard: RolloutBatch, denom: Denominators, num_micro: int, progress: float = 0.0) -> dict:
        """One optimizer step on this rank's shard, in exactly num_micro micro-batches.

        Every rank runs the same number of forward/backward passes (FSDP's collectives pair up);
        a rank with too few samples repeats one with loss scale 0. progress in [0, 1] drives
        annealed coefficients.
        """
        t0, cpu0 = time.perf_counter(), time.process_time()
        reset_peak()
        self.model.train()
        reduce, totals = reductions(self.cfg.algorithm), {}
        for i, (mb, scale) in enumerate(self._micro_batches(shard, num_micro)):
            last = i == num_micro - 1
            for module in (self.model, self.critic):
                if module is not None:
                    module.set_requires_gradient_sync(last)
            loss, stats = self._micro_batch_loss(mb, denom, progress)
            (loss * scale * self.world_size).backward()  # FSDP averages grads over ranks
            for k, v in stats.items():  # scale 0: a padding micro-batch, counts nothing
                totals[k] = v * scale if k not in totals else combine([totals[k], v * scale], reduce[k])
        totals["actor/lr"] = self.optimizer.param_groups[0]["lr"]
        totals["perf/learner_grads_gb"] = _gb(p.grad for p in self.model.parameters() if p.grad is not None)
        totals["actor/grad_norm"] = self._step(self.model, self.optimizer)  # before clipping
        totals["perf/learner_params_gb"] = _gb(self.model.parameters())  # this rank's shards (the group sums)
        totals["perf/learner_trainable_gb"] = _gb(p for p in self.model.parameters() if p.requires_grad)
        totals["perf/learner_optimizer_gb"] = _gb(t for st in self.optimizer.state.values() for t in st.values()
                                                  if isinstance(t, torch.Tensor))
        if self.critic is not None:
            totals["value_grad_norm"] = self._step(self.critic, self.critic_optimizer)
        totals["train_seconds"] = time.perf_counter() - t0
        totals["train_cpu_seconds"] = time.process_time() - cpu0  # / train_seconds = cores this rank kept busy
        totals["perf/max_memory_gb"] = peak_gb()  # this rank's; the group keeps the fullest rank's
        return totals

    def _micro_batches(self, shard: RolloutBatch, num_micro: int):
        """(micro-batch, loss scale) pairs, exactly num_micro of them (learner/microbatch.py)."""
        return ((mb, scale) for mb, scale, _ in self._planned(shard, num_micro))

    def _planned(self, shard: RolloutBatch, num_micro: int):
        """(micro-batch, loss scale, its samples' indices in the shard): a budget reorders samples."""
        return micro_batches(shard, num_micro, self.cfg.learner.max_tokens_per_micro_batch)

    def _inputs(self, mb: RolloutBatch) -> ModelInputs:
        """The micro-batch as the model takes it: one packed row, or padded rows (learner.packed)."""
        return model_inputs(mb.prompt_token_ids, mb.response_token_ids, self.pad_id, self.cfg.learner.packed).to(
            self.device)

    def _micro_batch_loss(self, mb: RolloutBatch, denom: Denominators, progress: float):
        a = self.cfg.algorithm
        inputs = self._inputs(mb)
        per_token = lambda cols: None if cols is None else pad_per_token(cols, inputs.mask.cpu()).to(self.device)  # noqa: E731
        mask = inputs.mask  # [B, R]: response tokens; every per-token tensor below has this layout
        if mb.token_mask is not None:  # episodes: only tokens the policy sampled enter any term (observations: 0)
            mask = mask & (per_token(mb.token_mask) > 0)
        loss_spec = spec("loss", a.loss)
        head = loss_spec.head(a) if loss_spec.head else {}  # full_distribution terms, from the chunked head
        out = response_logprobs(self.model, inputs, self.cfg.rollout.temperature, with_entropy=True, **head)
        per_sample = lambda flags: torch.as_tensor(np.asarray(flags, bool), device=self.device)[:, None]  # noqa: E731
        rl = mask & ~per_sample(mb.anchor if mb.anchor is not None else np.zeros(len(mb), bool))
        # Samples an estimator dropped (PSR drops the wrong ones, NSR the correct ones) leave the policy loss.
        loss_mask = rl if mb.loss_mask is None else rl & per_sample(mb.loss_mask)
        beh = per_token(mb.behaviour_logprobs)
        # logp_old: recomputed before the step's first update (learner/group.py), or the behaviour log-probs
        # in bypass mode; with one update per step it is this forward's own value (the same weights).
        old = out.logp.detach() if mb.old_logprobs is None else per_token(mb.old_logprobs)
        x = LossInputs(logp=out.logp, logp_old=old, advantages=per_token(mb.advantages), mask=loss_mask,
                       logp_ref=per_token(mb.ref_logprobs), entropy=out.entropy,
                       logp_teacher=per_token(mb.teacher_logprobs), correct=per_sample(mb.correct),
                       logp_proxy=out.logp_proxy, anchor_mask=mask & ~rl, logp_0=beh, logp_behaviour=beh)
        loss_tok, stats = loss_spec.fn(x, **knob_values(loss_spec, a))
        undeclared = set(stats) - {s.name for s in loss_spec.stats}
        if undeclared:
            raise ValueError(f"policy loss {a.loss!r} returned stats {sorted(undeclared)} its spec does not declare "
                             f"(add them to register_policy_loss(..., stats=...))")
        loss_tok = self._rollout_correction(loss_tok, x, rl, stats)
        for regulariser in REGULARISERS.values():
            term = regulariser(x, a, progress)
            if term is not None:
                loss_tok = loss_tok + term
        loss = AGGREGATIONS[a.loss_agg](loss_tok, loss_mask, denom)
        divergence = divergence_penalty(x, a, denom)
        if divergence is not None:
            loss = loss + divergence
            stats["actor/divergence"] = divergence.item()
        # the policy's whole objective (any KL, entropy, regulariser or divergence term included); the critic's apart
        stats["actor/pg_loss"] = loss.item()
        if self.critic is not None:  # 0.5 * (V - return)^2, token-mean over the step's batch
            values = inputs.to_responses(self.critic(inputs))
            value_loss = 0.5 * (((values - per_token(mb.returns)) ** 2) * loss_mask).sum() / denom.tokens
            loss = loss + value_loss
            stats["critic/vf_loss"] = value_loss.item()
        m, logp = rl.float(), out.logp.detach()
        stats.update({
            "tokens": m.sum().item(),
            "entropy_sum": (out.entropy.detach() * m).sum().item(),
            # metric: k3 to the reference, or to the behaviour policy when no reference ran
            "kl_sum": (KL_ESTIMATORS["k3"](logp, beh if x.logp_ref is None else x.logp_ref) * m).sum().item(),
            "mismatch_sum": ((beh - logp).abs() * m).sum().item(),
            "training/rollout_logprob_diff_max": ((beh - logp).abs() * m).max().item(),
        })
        return loss, stats

    def _rollout_correction(self, loss_tok: torch.Tensor, x: LossInputs, rl: torch.Tensor, stats: dict) -> torch.Tensor:
        """The policy loss weighted by the (detached) IS weight between logp_old and the behaviour policy."""
        a = self.cfg.algorithm
        mode = correction_mode(a, self.cfg.max_staleness)
        weight, corr = correction_weights(x.logp_old, x.logp_behaviour, rl, mode, a.rollout_correction.level,
                                          knob_values(spec("correction", mode), a))
        stats.update(corr)
        return loss_tok if mode == "none" else loss_tok * weight

    def per_sample(self, method: str, shard: RolloutBatch, num_micro: int) -> list:
        """old_logprobs / ref_logprobs / values of this rank's shard, kept here in the object store:
        [a reference to them]. The caller passes the reference on (to whoever holds the step's batch)
        without the arrays passing through it."""
        import ray

        if method not in ("old_logprobs", "ref_logprobs", "values"):
            raise ValueError(f"per_sample: unknown method {method!r}")
        return [ray.put(getattr(self, method)(shard, num_micro))]

    @torch.no_grad()
    def old_logprobs(self, shard: RolloutBatch, num_micro: int) -> list[np.ndarray]:
        """logp_old: this rank's log-probs of its shard before the step's first update (a collective, like
        train_step: every rank runs num_micro forwards)."""
        return self._per_sample(shard, num_micro,
                                lambda inputs: response_logprobs(self.model, inputs, self.cfg.rollout.temperature).logp)

    @torch.no_grad()
    def ref_logprobs(self, shard: RolloutBatch, num_micro: int) -> list[np.ndarray]:
        """The reference's log-probs of this rank's shard (a collective: each rank holds a shard of it).
        With LoRA the reference is the base: the policy with its adapters switched off, no second copy."""
        if self.reference is not None:
            return self._per_sample(shard, num_micro, lambda inputs: response_logprobs(
                self.reference, inputs, self.cfg.rollout.temperature).logp)
        from rlsys.learner.lora import adapters_disabled

        with adapters_disabled(self.model) as base:
            return self._per_sample(shard, num_micro,
                                    lambda inputs: response_logprobs(base, inputs, self.cfg.rollout.temperature).logp)

    def _per_sample(self, shard: RolloutBatch, num_micro: int, per_token) -> list[np.ndarray]:
        """per_token(inputs) -> [B, R] of every micro-batch, as one array per sample in shard order
        (a token budget reorders samples: they are put back)."""
        out: list = [None] * len(shard)
        for mb, scale, idx in self._planned(shard, num_micro):
            inputs = self._inputs(mb)
            for i, row in zip(idx if scale else [], unpad_per_token(per_token(inputs).cpu(), inputs.mask.cpu())):
                out[i] = row
        return out

    def _step(self, module, optimizer) -> float:
        """Clip the global grad norm, step, zero the grads; returns the norm before clipping."""
        max_norm = self.cfg.algorithm.optim.grad_clip or math.inf
        norm = torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm)
        if isinstance(norm, DTensor):
            norm = norm.full_tensor()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(norm)

    @torch.no_grad()
    def values(self, shard: RolloutBatch, num_micro: int) -> list[np.ndarray]:
        """The critic's per-token values of this rank's shard (a collective, like train_step)."""
        self.critic.eval()
        out = self._per_sample(shard, num_micro, lambda inputs: inputs.to_responses(self.critic(inputs)))
        self.critic.train()
        return out

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
    def push_weights(self, engines: list, version: int, probe: bool = True) -> SyncResult:
        """Stream the weights to the engines through the rollout.sync_backend backend; probe: then check
        the engines serve them (rlsys/sync/check.py; every rank must be given the same)."""
        if getattr(self, "_sync", None) is None:  # built once: nccl keeps its communicator
            from rlsys.sync import SYNC_BACKENDS

            self._sync = SYNC_BACKENDS[self.cfg.rollout.sync_backend](self.cfg)
        # async: the pushed version is kept for engines restarted while the learners move on
        out = self._sync.push(self.model, engines, version, is_sender=self.rank == 0,
                              keep_snapshot=self.cfg.max_staleness >= 1)
        if probe and self.cfg.rollout.check_weights != "off":
            self._probe(out, [e for i, e in enumerate(engines) if i not in out.failed], version)
        return out

    def _probe(self, out: SyncResult, engines: list, version: int) -> None:
        """Every live engine's log-probs of the probe text against the learners' (rlsys/sync/check.py):
        a collective forward on every rank; rank 0 compares and raises WeightSyncError on a gap."""
        from rlsys.sync.check import ProbeCheck

        t0 = time.perf_counter()
        if getattr(self, "_probe_check", None) is None:
            self._probe_check = ProbeCheck(AutoTokenizer.from_pretrained(self.model_path), DTYPES[self.cfg.model.dtype])
        asked = self._probe_check.ask(engines) if self.rank == 0 else []
        learner = self._probe_check.learner_logprobs(self.model, self.device)
        if self.rank == 0:
            out.probe_gap, out.probe_shift = self._probe_check.check(learner, asked, version)
            if out.checked != "checksum":
                out.checked = "probe"
        out.check_s += time.perf_counter() - t0
        out.seconds += time.perf_counter() - t0

    def end_step(self) -> None:
        """One RL step done (all its PPO updates): the lr schedule moves per RL step."""
        self.scheduler.step()

    def save_state(self, path: str) -> None:
        """This rank's shards of a resumable checkpoint (collective: every rank calls it)."""
        save_rank(self, path)

    def load_state(self, path: str) -> None:
        load_rank(self, path)

    def save_checkpoint(self, path: str) -> str | None:
        """HF-format checkpoint (weights + config + tokenizer) written by rank 0. With LoRA: the merged
        model there, and the PEFT adapter alone in path/adapter."""
        sd = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.rank == 0:
            Path(path).mkdir(parents=True, exist_ok=True)
            lora = self.cfg.learner.lora
            if lora.rank > 0:
                from rlsys.learner.lora import merged_state_dict, save_adapter, scale

                save_adapter(sd, lora, self.model_path, str(Path(path) / "adapter"))
                sd = merged_state_dict(sd, scale(lora))
            self.model.save_pretrained(path, state_dict=sd, safe_serialization=True)
            AutoTokenizer.from_pretrained(self.model_path).save_pretrained(path)
        dist.barrier()
        return path if self.rank == 0 else None

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def _gb(tensors) -> float:
    """GB the tensors hold on this rank (a sharded parameter: its local shard)."""
    local = lambda t: t.to_local() if isinstance(t, DTensor) else t  # noqa: E731
    return sum(local(t).numel() * local(t).element_size() for t in tensors) / 1e9
