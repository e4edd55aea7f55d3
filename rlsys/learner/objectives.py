"""Policy losses, loss aggregation and KL estimators: small registries of plain functions.

A policy loss maps a micro-batch to a per-token loss [B, T] plus stats; an aggregation turns
it into this micro-batch's share of the global mean, using global denominators so the sum over
micro-batches and ranks equals the loss of the whole batch. Adding one is one decorated function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

POLICY_LOSSES: dict[str, Callable] = {}
AGGREGATIONS: dict[str, Callable] = {}
KL_ESTIMATORS: dict[str, Callable] = {}


def _register(table: dict, name: str):
    def wrap(fn):
        table[name] = fn
        return fn

    return wrap


@dataclass
class LossInputs:
    logp: torch.Tensor  # [B, T] learner log-probs, with grad
    logp_old: torch.Tensor  # [B, T] learner log-probs at the start of the step, no grad
    advantages: torch.Tensor  # [B, T]
    mask: torch.Tensor  # [B, T] bool, response tokens
    logp_ref: torch.Tensor | None = None  # [B, T] reference log-probs


@dataclass
class Denominators:
    """Global counts over the whole step's batch (all ranks, all micro-batches)."""
    tokens: float
    sequences: float
    max_len: float  # Dr. GRPO's constant: rollout.max_new_tokens


# ---- policy losses ---------------------------------------------------------------------------
def _clipped_surrogate(ratio, x: LossInputs, clip_low: float, clip_high: float, dual_clip: float):
    unclipped = -x.advantages * ratio
    clipped = -x.advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    if dual_clip:  # bound the loss of negative-advantage tokens whose ratio has exploded
        loss = torch.where(x.advantages < 0, torch.minimum(loss, -x.advantages * dual_clip), loss)
    clipfrac = ((clipped > unclipped) & x.mask).float().sum()
    return loss, {"clipped_tokens": clipfrac.item()}


@_register(POLICY_LOSSES, "ppo_clip")
def ppo_clip(x: LossInputs, clip_low: float, clip_high: float, dual_clip: float = 0.0, **_):
    """L_t = -min(rho_t*A, clip(rho_t, 1-eps_low, 1+eps_high)*A), optionally dual-clipped."""
    return _clipped_surrogate(torch.exp(x.logp - x.logp_old), x, clip_low, clip_high, dual_clip)


@_register(POLICY_LOSSES, "gspo")
def gspo(x: LossInputs, clip_low: float, clip_high: float, dual_clip: float = 0.0, **_):
    """Sequence ratio s_i = exp(mean_t(logp - logp_old)), clipped per sequence; every token of
    a sequence carries its sequence's loss, so seq_mean_token_mean gives mean_i L_i."""
    m = x.mask.float()
    log_s = ((x.logp - x.logp_old) * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1)
    return _clipped_surrogate(torch.exp(log_s).expand_as(x.logp), x, clip_low, clip_high, dual_clip)


# ---- aggregation -----------------------------------------------------------------------------
@_register(AGGREGATIONS, "token_mean")
def token_mean(loss: torch.Tensor, mask: torch.Tensor, d: Denominators) -> torch.Tensor:
    """Mean over every response token of the batch (DAPO)."""
    return (loss * mask).sum() / d.tokens


@_register(AGGREGATIONS, "seq_mean_token_mean")
def seq_mean_token_mean(loss: torch.Tensor, mask: torch.Tensor, d: Denominators) -> torch.Tensor:
    """Mean over sequences of each sequence's token mean (GRPO)."""
    per_seq = (loss * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_seq.sum() / d.sequences


@_register(AGGREGATIONS, "seq_mean_token_sum_norm")
def seq_mean_token_sum_norm(loss: torch.Tensor, mask: torch.Tensor, d: Denominators) -> torch.Tensor:
    """Mean over sequences of the token sum divided by a constant max length (Dr. GRPO)."""
    return (loss * mask).sum() / (d.sequences * d.max_len)


# ---- KL estimators, l = logp_ref - logp ------------------------------------------------------
@_register(KL_ESTIMATORS, "k1")
def kl_k1(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    return logp - logp_ref


@_register(KL_ESTIMATORS, "k2")
def kl_k2(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    return 0.5 * (logp_ref - logp) ** 2


@_register(KL_ESTIMATORS, "k3")
def kl_k3(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    log_ratio = torch.clamp(logp_ref - logp, -20.0, 20.0)  # exp overflows long before this matters
    return torch.exp(log_ratio) - 1.0 - log_ratio
