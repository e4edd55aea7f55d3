"""Advantage estimators, computed on the controller over the whole batch (numpy, cheap).

An estimator takes the scored batch and the algorithm config and returns one float32 array
per sample (aligned with its response tokens) and a per-sample bool mask of the samples that
enter the loss (None = all). Adding one is one function decorated with @register_advantage.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from rlsys.data.batch import RolloutBatch

ADVANTAGES: dict[str, Callable] = {}
EPS = 1e-6


def register_advantage(name: str):
    def wrap(fn):
        ADVANTAGES[name] = fn
        return fn

    return wrap


def _broadcast(per_sample: np.ndarray, batch: RolloutBatch) -> list[np.ndarray]:
    return [np.full(len(r), a, dtype=np.float32) for a, r in zip(per_sample, batch.response_token_ids)]


def _groups(batch: RolloutBatch):
    for g in np.unique(batch.group_id):
        yield np.nonzero(batch.group_id == g)[0]


def correct(batch: RolloutBatch) -> np.ndarray:
    return batch.reward > 0


@register_advantage("grpo")
def grpo(batch: RolloutBatch, cfg) -> tuple[list[np.ndarray], None]:
    """A_i = (r_i - mean(r)) / (std(r) + eps); norm_std=False is Dr. GRPO's r_i - mean(r)."""
    adv = np.zeros(len(batch), dtype=np.float64)
    for idx in _groups(batch):
        r = batch.reward[idx].astype(np.float64)
        centred = r - r.mean()
        if cfg.norm_std:
            std = r.std(ddof=1) if len(r) > 1 else 0.0  # unbiased, as torch.std
            centred = centred / (std + EPS)
        adv[idx] = centred
    return _broadcast(adv, batch), None


@register_advantage("rloo")
def rloo(batch: RolloutBatch, cfg) -> tuple[list[np.ndarray], None]:
    """A_i = r_i - mean_{j != i} r_j (zero for a group of one)."""
    adv = np.zeros(len(batch), dtype=np.float64)
    for idx in _groups(batch):
        r = batch.reward[idx].astype(np.float64)
        if len(r) > 1:
            adv[idx] = r - (r.sum() - r) / (len(r) - 1)
    return _broadcast(adv, batch), None


def _reinforce_pp(batch: RolloutBatch, cfg, outcome: np.ndarray) -> tuple[list[np.ndarray], None]:
    """Per-token reward -beta*kl_t, outcome added at the last token, return-to-go, whitened
    over every token of the batch. kl_t is k1 on the behaviour samples (logp_beh - logp_ref)."""
    returns = []
    for i, r in enumerate(batch.response_token_ids):
        tok = np.zeros(len(r), dtype=np.float64)
        if cfg.kl_placement == "reward" and cfg.kl_coef:
            tok -= cfg.kl_coef * (batch.behaviour_logprobs[i] - batch.ref_logprobs[i])
        if len(r):
            tok[-1] += outcome[i]
        returns.append(np.cumsum(tok[::-1])[::-1])
    flat = np.concatenate(returns) if returns else np.zeros(0)
    mean, std = flat.mean(), flat.std()
    return [((g - mean) / (std + EPS)).astype(np.float32) for g in returns], None


@register_advantage("reinforce_pp")
def reinforce_pp(batch: RolloutBatch, cfg):
    """REINFORCE++: the raw outcome reward, globally whitened return-to-go."""
    return _reinforce_pp(batch, cfg, batch.reward.astype(np.float64))


@register_advantage("reinforce_pp_baseline")
def reinforce_pp_baseline(batch: RolloutBatch, cfg):
    """REINFORCE++-baseline: subtract the group mean reward first, then as reinforce_pp."""
    outcome = batch.reward.astype(np.float64).copy()
    for idx in _groups(batch):
        outcome[idx] -= outcome[idx].mean()
    return _reinforce_pp(batch, cfg, outcome)


@register_advantage("psr")
def psr(batch: RolloutBatch, cfg):
    """Positive sample reinforcement: +1 on correct samples; wrong samples leave the loss."""
    ok = correct(batch)
    return _broadcast(np.where(ok, 1.0, 0.0), batch), ok


@register_advantage("nsr")
def nsr(batch: RolloutBatch, cfg):
    """Negative sample reinforcement: -1 on wrong samples; correct samples leave the loss."""
    ok = correct(batch)
    return _broadcast(np.where(ok, 0.0, -1.0), batch), ~ok


@register_advantage("w_reinforce")
def w_reinforce(batch: RolloutBatch, cfg):
    """lambda on correct samples, -1 on wrong (lambda = 1 is plain REINFORCE with +-1 rewards)."""
    return _broadcast(np.where(correct(batch), cfg.w_lambda, -1.0), batch), None


# Estimators that fold the KL-in-reward term into their returns before normalising.
KL_IN_RETURNS = {"reinforce_pp", "reinforce_pp_baseline"}


def compute_advantages(batch: RolloutBatch, cfg) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Advantages and the per-sample loss mask; with kl_placement=reward, -kl_coef * (k1
    return-to-go) is added to each token's advantage (detached: the reverse-KL gradient)."""
    adv, keep = ADVANTAGES[cfg.advantage](batch, cfg)
    if cfg.kl_placement == "reward" and cfg.kl_coef and cfg.advantage not in KL_IN_RETURNS:
        adv = [a - cfg.kl_coef * kl_return_to_go(batch, i) for i, a in enumerate(adv)]
    return adv, keep


def kl_return_to_go(batch: RolloutBatch, i: int) -> np.ndarray:
    """sum_{s >= t} k1_s on sample i: the KL-in-reward term each token's advantage carries."""
    k1 = batch.behaviour_logprobs[i].astype(np.float64) - batch.ref_logprobs[i]
    return np.cumsum(k1[::-1])[::-1].astype(np.float32)
