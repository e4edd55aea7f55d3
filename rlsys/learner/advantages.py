"""Advantage estimators, computed on the controller over the whole batch (numpy, cheap).

An estimator takes the scored batch and the algorithm config and returns one float32 array
per sample (aligned with its response tokens) and a per-sample bool mask of the samples that
enter the loss (None = all). Adding one is one function decorated with @register_advantage,
which declares what it needs, the knobs it reads and the stats it adds (learner/spec.py).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from rlsys.data.batch import RolloutBatch
from rlsys.learner.spec import Stat, declare, spec

ADVANTAGES: dict[str, Callable] = {}
EPS = 1e-6


def register_advantage(name: str, *, needs=(), knobs=(), stats=(), per_token=False, kl_in_returns=False):
    """Decorator for fn(batch, a) -> (per-sample advantage arrays, loss mask or None).
    per_token: advantages differ along a response; kl_in_returns: it adds kl.placement=reward's
    KL to its own returns (else compute_advantages adds the KL return-to-go afterwards)."""
    return declare("advantage", name, ADVANTAGES, needs=needs, knobs=knobs, stats=stats,
                   per_token_advantage=per_token, kl_in_returns=kl_in_returns)


def _broadcast(per_sample: np.ndarray, batch: RolloutBatch) -> list[np.ndarray]:
    return [np.full(len(r), a, dtype=np.float32) for a, r in zip(per_sample, batch.response_token_ids)]


def _groups(batch: RolloutBatch):
    for g in np.unique(batch.group_id):
        yield np.nonzero(batch.group_id == g)[0]


@register_advantage("grpo", knobs=("norm_std",))
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
        if cfg.kl.placement == "reward" and cfg.kl.coef:
            tok -= cfg.kl.coef * _k1(batch, i)
        if len(r):
            tok[-1] += outcome[i]
        returns.append(np.cumsum(tok[::-1])[::-1])
    return _whiten(returns), None


@register_advantage("reinforce_pp", per_token=True, kl_in_returns=True)
def reinforce_pp(batch: RolloutBatch, cfg):
    """REINFORCE++: the raw outcome reward, globally whitened return-to-go."""
    return _reinforce_pp(batch, cfg, batch.reward.astype(np.float64))


@register_advantage("reinforce_pp_baseline", per_token=True, kl_in_returns=True)
def reinforce_pp_baseline(batch: RolloutBatch, cfg):
    """REINFORCE++-baseline: subtract the group mean reward first, then as reinforce_pp."""
    outcome = batch.reward.astype(np.float64).copy()
    for idx in _groups(batch):
        outcome[idx] -= outcome[idx].mean()
    return _reinforce_pp(batch, cfg, outcome)


@register_advantage("psr")
def psr(batch: RolloutBatch, cfg):
    """Positive sample reinforcement: +1 on correct samples; wrong samples leave the loss."""
    ok = batch.correct
    return _broadcast(np.where(ok, 1.0, 0.0), batch), ok


@register_advantage("nsr")
def nsr(batch: RolloutBatch, cfg):
    """Negative sample reinforcement: -1 on wrong samples; correct samples leave the loss."""
    ok = batch.correct
    return _broadcast(np.where(ok, 0.0, -1.0), batch), ~ok


@register_advantage("w_reinforce", knobs=("w_lambda",))
def w_reinforce(batch: RolloutBatch, cfg):
    """lambda on correct samples, -1 on wrong (lambda = 1 is plain REINFORCE with +-1 rewards)."""
    return _broadcast(np.where(batch.correct, cfg.w_lambda, -1.0), batch), None


@register_advantage("gae", needs=("critic",), knobs=("critic.gamma", "critic.gae_lambda", "critic.lr"), per_token=True,
                    kl_in_returns=True, stats=(Stat("critic/vf_loss"),))
def gae(batch: RolloutBatch, cfg):
    """PPO: per-token reward (outcome at the last token, -kl.coef*k1 when kl.placement=reward),
    delta_t = r_t + gamma*V_{t+1} - V_t, A_t = sum_l (gamma*lambda)^l delta_{t+l}; the critic's
    targets (returns = A + V) are stored on the batch; advantages whitened over the batch."""
    adv, returns = [], []
    for i, r in enumerate(batch.response_token_ids):
        rew = np.zeros(len(r), dtype=np.float64)
        if cfg.kl.placement == "reward" and cfg.kl.coef:
            rew -= cfg.kl.coef * _k1(batch, i)
        if len(r):
            rew[-1] += batch.reward[i]
        v = batch.values[i].astype(np.float64)
        a, last = np.zeros(len(r)), 0.0
        for t in reversed(range(len(r))):
            v_next = v[t + 1] if t + 1 < len(r) else 0.0
            last = rew[t] + cfg.critic.gamma * v_next - v[t] + cfg.critic.gamma * cfg.critic.gae_lambda * last
            a[t] = last
        adv.append(a)
        returns.append((a + v).astype(np.float32))
    batch.returns = returns
    return _whiten(adv), None


def _whiten(per_token: list[np.ndarray]) -> list[np.ndarray]:
    flat = np.concatenate(per_token) if per_token else np.zeros(0)
    mean, std = (flat.mean(), flat.std()) if len(flat) else (0.0, 1.0)
    return [((a - mean) / (std + EPS)).astype(np.float32) for a in per_token]


@register_advantage("opd", needs=("teacher",), per_token=True)
def opd(batch: RolloutBatch, cfg):
    """On-policy distillation: per-token reward logp_teacher_t - logp_t on the student's samples
    (logp_t: the behaviour log-prob the student sampled with); the verifier reward is unused."""
    return [(t - b).astype(np.float32) for t, b in zip(batch.teacher_logprobs, batch.behaviour_logprobs)], None


@register_advantage("g_opd", needs=("teacher", "reference"), knobs=("distill.scale",), per_token=True)
def g_opd(batch: RolloutBatch, cfg):
    """G-OPD / ExOPD: lambda*(logp_teacher - logp_ref) - (logp - logp_ref) per token;
    distill.scale = 1 is OPD, > 1 extrapolates past the teacher."""
    lam = cfg.distill.scale
    return [(lam * (t - r) - (b - r)).astype(np.float32)
            for t, r, b in zip(batch.teacher_logprobs, batch.ref_logprobs, batch.behaviour_logprobs)], None


def overlong_penalty(lengths: np.ndarray, max_len: int, buffer_frac: float) -> np.ndarray:
    """DAPO: 0 up to Lmax - Lc, then (Lmax - Lc - |y|)/Lc falling to -1 at Lmax, -1 beyond."""
    lc = buffer_frac * max_len
    if lc <= 0:
        return np.zeros(len(lengths), dtype=np.float32)
    pen = np.clip((max_len - lc - lengths) / lc, -1.0, 0.0)
    return np.where(lengths > max_len, -1.0, pen).astype(np.float32)


def compute_advantages(batch: RolloutBatch, cfg, max_new_tokens: int | None = None):
    """Advantages and the per-sample loss mask. With overlong shaping the estimator sees the
    shaped reward (batch.reward itself stays the verifier's); with kl.placement=reward,
    -kl.coef * (k1 return-to-go) is added to each token's advantage (detached: reverse-KL gradient)."""
    scored = batch
    if cfg.sampling.overlong_buffer and max_new_tokens:
        shaped = batch.reward + overlong_penalty(batch.response_lengths, max_new_tokens, cfg.sampling.overlong_buffer)
        scored = dataclasses.replace(batch, reward=shaped.astype(np.float32))
    adv, keep = ADVANTAGES[cfg.advantage](scored, cfg)
    batch.returns = scored.returns
    if cfg.kl.placement == "reward" and cfg.kl.coef and not spec("advantage", cfg.advantage).kl_in_returns:
        adv = [a - cfg.kl.coef * kl_return_to_go(batch, i) for i, a in enumerate(adv)]
    return adv, keep


def kl_return_to_go(batch: RolloutBatch, i: int) -> np.ndarray:
    """sum_{s >= t} k1_s on sample i: the KL-in-reward term each token's advantage carries."""
    k1 = _k1(batch, i)
    return np.cumsum(k1[::-1])[::-1].astype(np.float32)


def _k1(batch: RolloutBatch, i: int) -> np.ndarray:
    """k1 = logp_behaviour - logp_ref per token of sample i; 0 on tokens the policy did not sample
    (episodes' observations have no behaviour log-prob)."""
    k1 = batch.behaviour_logprobs[i].astype(np.float64) - batch.ref_logprobs[i]
    return k1 if batch.token_mask is None else k1 * (batch.token_mask[i] > 0)
