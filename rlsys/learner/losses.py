"""Policy losses, aggregation, KL estimators, divergences and regularisers: small registries.

A policy loss maps a micro-batch to a per-token loss [B, T] plus stats; a regulariser adds a
per-token term (KL to the reference, entropy bonus, KL to a teacher); an aggregation turns the
sum into this micro-batch's share of the global mean, using global denominators so the sum over
micro-batches and ranks equals the loss of the whole batch. DPH-RL divergences act on the
initial-policy "anchor" samples only. Adding any of them is one decorated function; policy
losses, regularisers and divergences declare their needs, knobs and stats (learner/spec.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from rlsys.learner.spec import Stat, declare

POLICY_LOSSES: dict[str, Callable] = {}
AGGREGATIONS: dict[str, Callable] = {}
KL_ESTIMATORS: dict[str, Callable] = {}
DIVERGENCES: dict[str, Callable] = {}
REGULARISERS: dict[str, Callable] = {}
ROLLOUT_CORRECTIONS: dict[str, Callable] = {}


def _register(table: dict, name: str):
    def wrap(fn):
        table[name] = fn
        return fn

    return wrap


def register_policy_loss(name: str, *, needs=(), knobs=(), stats=(), head=None, advantage_weighted=False):
    """Decorator for fn(x: LossInputs, **knobs) -> (per-token loss [B, T], stats dict): called with
    the algorithm keys named in `knobs`; every key of the stats dict must be declared in `stats`.
    advantage_weighted: the loss is exactly 0 wherever the advantage is 0, so the learners may skip
    samples without advantage (learner/group.py)."""
    return declare("loss", name, POLICY_LOSSES, needs=needs, knobs=knobs, stats=stats, head=head,
                   advantage_weighted=advantage_weighted)


def register_regulariser(name: str, *, active, needs=(), knobs=(), stats=()):
    """Decorator for fn(x, a, progress) -> per-token term or None; `active(a)` says when it is on."""
    return declare("regulariser", name, REGULARISERS, needs=needs, knobs=knobs, stats=stats, active=active)


def register_divergence(name: str):
    """Decorator for a DPH-RL generator f(log u) (algorithm.divergence.name=<name>)."""
    return declare("divergence", name, DIVERGENCES, needs=("anchors",),
                   knobs=("divergence.coef", "divergence.anchor_samples", "divergence.anchor_pool"),
                   stats=(Stat("actor/divergence"),), active=lambda a: a.divergence.name == name)


def register_rollout_correction(name: str, *, knobs=()):
    """Decorator for fn(ratio, **knobs) -> (IS weight, {"truncated" or "masked": bool}): the weight on each
    token's policy loss, from ratio = pi_old / pi_behaviour at algorithm.rollout_correction.level
    (broadcast over the tokens), and where the mode cut it."""
    return declare("correction", name, ROLLOUT_CORRECTIONS, knobs=knobs, stats=CORRECTION_STATS)


CLIP_KNOBS = ("clip_low", "clip_high", "dual_clip")
CLIPPED = Stat("clipped_tokens", per_token=True, metric="actor/pg_clipfrac")  # tokens where the clip bound won
# Every correction mode (none included) reports these, over the step's RL tokens.
CORRECTION_STATS = (Stat("rc_k1", per_token=True, metric="rollout_corr/kl_k1"),  # mean(logp_old - logp_behaviour)
                    Stat("rc_k3", per_token=True, metric="rollout_corr/kl_k3"),  # k3 of KL(behaviour || old)
                    Stat("rc_weight", per_token=True, metric="rollout_corr/is_weight_mean"),
                    Stat("rc_weight_max", "max", metric="rollout_corr/is_weight_max"),
                    Stat("rc_truncated", per_token=True, metric="rollout_corr/truncated_frac"),
                    Stat("rc_masked", per_token=True, metric="rollout_corr/masked_frac"))


@dataclass
class LossInputs:
    logp: torch.Tensor  # [B, T] learner log-probs, with grad
    logp_old: torch.Tensor  # [B, T] learner log-probs at the start of the step, no grad
    advantages: torch.Tensor  # [B, T]
    mask: torch.Tensor  # [B, T] bool, response tokens
    logp_ref: torch.Tensor | None = None  # [B, T] reference log-probs
    entropy: torch.Tensor | None = None  # [B, T] learner entropy, with grad
    logp_teacher: torch.Tensor | None = None  # [B, T] teacher log-probs (distillation)
    correct: torch.Tensor | None = None  # [B, 1] bool: the verifier accepted the sample
    logp_proxy: torch.Tensor | None = None  # [B, T] Lp-Reg proxy log-prob of the token (-inf: filtered)
    anchor_mask: torch.Tensor | None = None  # [B, T] bool: tokens of initial-policy samples (DPH-RL)
    logp_0: torch.Tensor | None = None  # [B, T] initial-policy log-probs of the anchor tokens
    logp_behaviour: torch.Tensor | None = None  # [B, T] the engines' sampling log-probs (behaviour policy)


@dataclass
class Denominators:
    """Global counts over the whole step's batch (all ranks, all micro-batches)."""
    tokens: float
    sequences: float
    max_len: float  # Dr. GRPO's constant: rollout.max_new_tokens
    anchor_tokens: float = 1.0  # DPH-RL: tokens of the anchor samples mixed into the step


# ---- policy losses ---------------------------------------------------------------------------
def _clipped_surrogate(ratio, x: LossInputs, clip_low: float, clip_high: float, dual_clip: float):
    unclipped = -x.advantages * ratio
    clipped = -x.advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    if dual_clip:  # bound the loss of negative-advantage tokens whose ratio has exploded
        loss = torch.where(x.advantages < 0, torch.minimum(loss, -x.advantages * dual_clip), loss)
    clipfrac = ((clipped > unclipped) & x.mask).float().sum()
    return loss, {"clipped_tokens": clipfrac.item()}


@register_policy_loss("ppo_clip", knobs=CLIP_KNOBS, stats=(CLIPPED,), advantage_weighted=True)
def ppo_clip(x: LossInputs, clip_low: float, clip_high: float, dual_clip: float = 0.0):
    """L_t = -min(rho_t*A, clip(rho_t, 1-eps_low, 1+eps_high)*A), optionally dual-clipped."""
    return _clipped_surrogate(torch.exp(x.logp - x.logp_old), x, clip_low, clip_high, dual_clip)


@register_policy_loss("gspo", needs=("sequence_ratio",), knobs=CLIP_KNOBS, stats=(CLIPPED,), advantage_weighted=True)
def gspo(x: LossInputs, clip_low: float, clip_high: float, dual_clip: float = 0.0):
    """Sequence ratio s_i = exp(mean_t(logp - logp_old)), clipped per sequence; every token of
    a sequence carries its sequence's loss, so seq_mean_token_mean gives mean_i L_i."""
    m = x.mask.float()
    log_s = ((x.logp - x.logp_old) * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1)
    return _clipped_surrogate(torch.exp(log_s).expand_as(x.logp), x, clip_low, clip_high, dual_clip)


@register_policy_loss("lp_reg", needs=("full_distribution",), knobs=CLIP_KNOBS + ("lp_reg.coef", "lp_reg.rho"),
                      stats=(CLIPPED, Stat("actor/lp_reg_tokens")), head=lambda a: {"proxy_kappa": a.lp_reg.kappa})
def lp_reg(x: LossInputs, clip_low: float, clip_high: float, dual_clip: float = 0.0, lp_reg_coef: float = 1.0,
           lp_reg_rho: float = 0.01):
    """Lp-Reg: the clipped surrogate, except on negative-advantage tokens in the lowest-probability
    fraction rho (of this micro-batch) whose pi_theta is below the proxy's: there -A*rho_t + coef*k3."""
    ratio = torch.exp(x.logp - x.logp_old)
    loss, stats = _clipped_surrogate(ratio, x, clip_low, clip_high, dual_clip)
    if not x.mask.any():
        return loss, stats
    low = x.logp_old <= torch.quantile(x.logp_old[x.mask].float(), lp_reg_rho)
    chosen = x.mask & low & (x.advantages < 0) & (x.logp.detach() < x.logp_proxy)
    proxy = torch.where(chosen, x.logp_proxy, x.logp.detach())  # finite everywhere k3 is evaluated
    regular = -x.advantages * ratio + lp_reg_coef * kl_k3(x.logp, proxy)
    stats["actor/lp_reg_tokens"] = chosen.float().sum().item()
    return torch.where(chosen, regular, loss), stats


# ---- rollout correction: behaviour policy (the engines, maybe k versions old) vs logp_old ---------
def correction_mode(a, max_staleness: int) -> str:
    """algorithm.rollout_correction.mode with `auto` resolved: decoupled PPO (token TIS against the
    recomputed logp_old) when training off-policy (trainer.max_staleness >= 1), else none."""
    rc = a.rollout_correction
    if rc.mode != "auto":
        return rc.mode
    return "tis" if max_staleness >= 1 and not rc.bypass else "none"


@register_rollout_correction("none")
def no_correction(ratio: torch.Tensor):
    return torch.ones_like(ratio), {}


@register_rollout_correction("tis", knobs=("rollout_correction.cap",))
def truncated_is(ratio: torch.Tensor, rollout_correction_cap: float = 2.0):
    """TIS: w = min(rho, C)."""
    return torch.clamp(ratio, max=rollout_correction_cap), {"truncated": ratio > rollout_correction_cap}


@register_rollout_correction("mis", knobs=("rollout_correction.low", "rollout_correction.high"))
def masked_is(ratio: torch.Tensor, rollout_correction_low: float = 0.5, rollout_correction_high: float = 5.0):
    """MIS (rejection): w = 1 where lo <= rho <= hi, 0 elsewhere (the sample or token leaves the loss)."""
    keep = (ratio >= rollout_correction_low) & (ratio <= rollout_correction_high)
    return keep.to(ratio.dtype), {"masked": ~keep}


@register_rollout_correction("icepop", knobs=("rollout_correction.low", "rollout_correction.high"))
def icepop(ratio: torch.Tensor, rollout_correction_low: float = 0.5, rollout_correction_high: float = 5.0):
    """IcePop: w = rho where lo <= rho <= hi, 0 elsewhere (the IS weight kept inside the band)."""
    keep = (ratio >= rollout_correction_low) & (ratio <= rollout_correction_high)
    return ratio * keep, {"masked": ~keep}


def correction_weights(logp_old: torch.Tensor, logp_behaviour: torch.Tensor, mask: torch.Tensor, mode: str,
                       level: str, knobs: dict) -> tuple[torch.Tensor, dict]:
    """Detached IS weights [B, T] of `mode` and the rollout_corr stats summed over `mask`.
    level: token rho_t = exp(logp_old_t - logp_behaviour_t); sequence prod_t rho_t; geometric (prod_t rho_t)^(1/T)."""
    m = mask.float()
    log_rho = ((logp_old - logp_behaviour) * m).detach()
    if level == "token":
        log_r = log_rho
    else:
        log_r = log_rho.sum(-1, keepdim=True)
        log_r = (log_r / m.sum(-1, keepdim=True).clamp(min=1) if level == "geometric" else log_r).expand_as(log_rho)
    weight, cut = ROLLOUT_CORRECTIONS[mode](torch.exp(torch.clamp(log_r, -20.0, 20.0)), **knobs)
    weight = weight * m
    zero, none_cut = torch.zeros((), device=m.device), torch.zeros_like(mask)
    stats = {"rc_k1": log_rho.sum().item(), "rc_k3": (kl_k3(logp_behaviour, logp_old).detach() * m).sum().item(),
             "rc_weight": weight.sum().item(), "rc_weight_max": (weight.max() if mask.any() else zero).item(),
             "rc_truncated": (cut.get("truncated", none_cut) & mask).float().sum().item(),
             "rc_masked": (cut.get("masked", none_cut) & mask).float().sum().item()}
    return weight, stats


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


# ---- regularisers: per-token terms added to the policy loss; None when switched off ------------
@register_regulariser("kl", active=lambda a: a.kl.coef > 0, needs=("reference",),
                      knobs=("kl.coef", "kl.estimator", "kl.placement"))
def kl_penalty(x: LossInputs, a, progress: float):
    """kl.coef * k(logp, logp_ref), when the KL sits in the loss (kl.placement=loss)."""
    if a.kl.coef and a.kl.placement == "loss":
        return a.kl.coef * KL_ESTIMATORS[a.kl.estimator](x.logp, x.logp_ref)
    return None


@register_regulariser("entropy", active=lambda a: a.entropy_coef > 0, knobs=("entropy_coef",))
def entropy_bonus(x: LossInputs, a, progress: float):
    """-entropy_coef * H_t: rewards spread-out next-token distributions."""
    return -a.entropy_coef * x.entropy if a.entropy_coef else None


@register_regulariser("teacher_kl", active=lambda a: a.distill.kl_coef > 0, needs=("teacher",),
                      knobs=("distill.kl_coef", "distill.kl_coef_end", "distill.kl_mask_correct"))
def teacher_kl(x: LossInputs, a, progress: float):
    """KDRL: beta * k2(logp, logp_teacher), beta annealed linearly from distill.kl_coef to
    distill.kl_coef_end over the run; optionally off on responses the verifier accepted."""
    if not a.distill.kl_coef:
        return None
    end = a.distill.kl_coef if a.distill.kl_coef_end is None else a.distill.kl_coef_end
    beta = a.distill.kl_coef + (end - a.distill.kl_coef) * progress
    term = beta * kl_k2(x.logp, x.logp_teacher)
    return term * (~x.correct).float() if a.distill.kl_mask_correct else term


# ---- DPH-RL divergences f(u), u = pi_theta / pi_0 on samples from pi_0 ------------------------
@register_divergence("forward_kl")
def forward_kl(log_u: torch.Tensor) -> torch.Tensor:
    """f(u) = u - 1 - log u: E_{pi_0}[f] = KL(pi_0 || pi_theta)."""
    return torch.exp(log_u) - 1.0 - log_u


@register_divergence("js")
def js(log_u: torch.Tensor) -> torch.Tensor:
    """f(u) = u log u - (u + 1) log((u + 1) / 2): a Jensen-Shannon-type generator."""
    u = torch.exp(log_u)
    return u * log_u - (u + 1.0) * (torch.log1p(u) - math.log(2.0))


def divergence_penalty(x: LossInputs, a, d: Denominators) -> torch.Tensor | None:
    """eta * token-mean of f(u_t) over every anchor token of the step (global denominator)."""
    if a.divergence.name == "none" or x.anchor_mask is None:
        return None
    log_u = torch.clamp(x.logp - x.logp_0, -20.0, 20.0)
    f = DIVERGENCES[a.divergence.name](log_u)
    return a.divergence.coef * (f * x.anchor_mask).sum() / d.anchor_tokens
