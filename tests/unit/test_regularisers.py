"""Penalties, regularisers, distillation and PPO/DAPO pieces against hand-derived values."""

import math

import numpy as np
import pytest
import torch

from rlsys.config import algorithm_config
from rlsys.learner.advantages import compute_advantages, overlong_penalty
from rlsys.learner.logprobs import _proxy_logprob
from rlsys.learner.losses import (DIVERGENCES, REGULARISERS, Denominators, LossInputs, divergence_penalty,
                                      lp_reg, ppo_clip)
from rlsys.loop.pipeline import informative, with_anchors
from tests.unit.test_data import make_batch

PI0 = torch.softmax(torch.tensor([0.4, -0.1, 1.2, 0.0], dtype=torch.float64), 0)
THETA = torch.tensor([0.9, 0.3, -0.4, 0.2], dtype=torch.float64)


def expected_divergence(name):
    """E_{y ~ pi_0}[f(pi_theta(y)/pi_0(y))] by enumeration, with its gradient in theta."""
    theta = THETA.clone().requires_grad_()
    logp = torch.log_softmax(theta, 0)
    value = (PI0 * DIVERGENCES[name](logp - PI0.log())).sum()
    (grad,) = torch.autograd.grad(value, theta)
    return value, grad


def test_forward_kl_generator_is_kl_from_pi0():
    value, grad = expected_divergence("forward_kl")
    theta = THETA.clone().requires_grad_()
    kl = (PI0 * (PI0.log() - torch.log_softmax(theta, 0))).sum()  # KL(pi_0 || pi_theta)
    (kl_grad,) = torch.autograd.grad(kl, theta)
    assert value.item() == pytest.approx(kl.item(), abs=1e-12)
    assert grad.tolist() == pytest.approx(kl_grad.tolist(), abs=1e-12)


def test_js_generator_is_twice_jensen_shannon():
    value, grad = expected_divergence("js")
    theta = THETA.clone().requires_grad_()
    pi = torch.softmax(theta, 0)
    m = (pi + PI0) / 2
    js = 0.5 * (pi * (pi / m).log()).sum() + 0.5 * (PI0 * (PI0 / m).log()).sum()
    (js_grad,) = torch.autograd.grad(2 * js, theta)
    assert value.item() == pytest.approx(2 * js.item(), abs=1e-12)
    assert grad.tolist() == pytest.approx(js_grad.tolist(), abs=1e-12)


def test_divergence_penalty_is_token_mean_over_anchor_tokens_only():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]])
    logp0 = torch.tensor([[-1.5, -2.0], [-0.5, 0.0]])
    anchor = torch.tensor([[True, True], [True, False]])  # 3 anchor tokens; the -9 sits outside
    x = LossInputs(logp=logp, logp_old=logp, advantages=torch.zeros(2, 2), mask=~anchor, anchor_mask=anchor, logp_0=logp0)
    a = algorithm_config(divergence={"name": "forward_kl", "coef": 0.1})
    u = math.exp(0.5)
    want = 0.1 * (u - 1 - 0.5) / 3
    assert divergence_penalty(x, a, Denominators(1, 1, 1, anchor_tokens=3)).item() == pytest.approx(want, rel=1e-6)


def test_lp_reg_proxy_and_replaced_tokens():
    probs = torch.tensor([0.6, 0.39, 0.01])  # 0.01 < 0.02 * 0.6: filtered out of the proxy
    logp_all = probs.log().reshape(1, 1, 3)
    got = _proxy_logprob(logp_all.expand(1, 3, 3), torch.tensor([[[0], [1], [2]]]), kappa=0.02)[0]
    assert got[:2].tolist() == pytest.approx([math.log(0.6 / 0.99), math.log(0.39 / 0.99)])
    assert got[2].item() == -math.inf
    # token 0: negative advantage, rarest, pi < proxy -> replaced; token 1: positive advantage -> clipped loss
    logp = torch.tensor([[math.log(0.3), math.log(0.5)]], requires_grad=True)
    x = LossInputs(logp=logp, logp_old=logp.detach(), advantages=torch.tensor([[-1.0, 1.0]]),
                   mask=torch.ones(1, 2, dtype=torch.bool), logp_proxy=torch.tensor([[math.log(0.5), math.log(0.4)]]))
    loss, stats = lp_reg(x, clip_low=0.2, clip_high=0.2, lp_reg_coef=2.0, lp_reg_rho=0.5)
    l = math.log(0.5) - math.log(0.3)
    assert loss[0, 0].item() == pytest.approx(1.0 + 2.0 * (math.exp(l) - 1 - l), rel=1e-6)
    assert loss[0, 1].item() == pytest.approx(ppo_clip(x, 0.2, 0.2)[0][0, 1].item())
    assert stats["actor/lp_reg_tokens"] == 1


def test_kdrl_teacher_kl_anneals_and_masks_correct():
    logp, teacher = torch.tensor([[-1.0], [-1.0]]), torch.tensor([[-2.0], [-2.0]])
    x = LossInputs(logp=logp, logp_old=logp, advantages=torch.zeros(2, 1), mask=torch.ones(2, 1, dtype=torch.bool),
                   logp_teacher=teacher, correct=torch.tensor([[True], [False]]))
    a = algorithm_config(distill={"kl_coef": 5e-3, "kl_coef_end": 1e-3, "kl_mask_correct": True})
    start, end = REGULARISERS["teacher_kl"](x, a, 0.0), REGULARISERS["teacher_kl"](x, a, 1.0)
    assert start.flatten().tolist() == pytest.approx([0.0, 5e-3 * 0.5])  # k2 = (1)^2 / 2
    assert end.flatten().tolist() == pytest.approx([0.0, 1e-3 * 0.5])


def test_gae_by_hand():
    b = make_batch([2, 1])
    b.reward = np.array([1.0, 0.0], dtype=np.float32)
    b.values = [np.array([0.5, 0.8], np.float32), np.array([0.2], np.float32)]
    adv, _ = compute_advantages(b, algorithm_config(advantage="gae", critic={"enabled": True, "gamma": 0.9, "gae_lambda": 0.5}))
    d1 = 1.0 - 0.8  # last token: r + 0 - V
    d0 = 0.0 + 0.9 * 0.8 - 0.5
    raw = np.array([d0 + 0.9 * 0.5 * d1, d1, 0.0 - 0.2])
    assert np.concatenate(b.returns) == pytest.approx(raw + np.array([0.5, 0.8, 0.2]), abs=1e-6)
    assert np.concatenate(adv) == pytest.approx((raw - raw.mean()) / (raw.std() + 1e-6), abs=1e-5)


def test_opd_and_g_opd_by_hand():
    b = make_batch([2])
    b.behaviour_logprobs = [np.array([-1.0, -2.0], np.float32)]
    b.teacher_logprobs = [np.array([-0.5, -3.0], np.float32)]
    b.ref_logprobs = [np.array([-1.5, -2.5], np.float32)]
    opd, _ = compute_advantages(b, algorithm_config(advantage="opd", distill={"teacher_path": "t"}))
    assert opd[0].tolist() == pytest.approx([0.5, -1.0])
    g, _ = compute_advantages(b, algorithm_config(advantage="g_opd", distill={"scale": 2.0, "teacher_path": "t"}))
    assert g[0].tolist() == pytest.approx([2 * 1.0 - 0.5, 2 * -0.5 - 0.5])


def test_overlong_penalty_by_hand():
    lengths = np.array([4, 6, 7, 8, 9])
    assert overlong_penalty(lengths, 8, 0.25).tolist() == pytest.approx([0.0, 0.0, -0.5, -1.0, -1.0])
    b = make_batch([8, 4])
    b.group_id = np.array([0, 0])
    b.reward = np.array([1.0, 1.0], dtype=np.float32)
    adv, _ = compute_advantages(b, algorithm_config(norm_std=False, sampling={"overlong_buffer": 0.25}), max_new_tokens=8)
    assert [a[0] for a in adv] == pytest.approx([-0.5, 0.5])  # shaped rewards 0 and 1
    assert b.reward.tolist() == [1.0, 1.0]  # the verifier's reward itself is kept


def test_informative_groups():
    b = make_batch([1] * 6)  # groups {0,1} {2,3} {4,5}
    b.reward = np.array([1, 0, 1, 1, 0, 0], dtype=np.float32)
    assert informative(b).tolist() == [True, True, False, False, False, False]


def test_anchor_samples_join_without_policy_loss():
    b = make_batch([1, 2])
    b.advantages = [np.ones(1, np.float32), np.ones(2, np.float32)]
    b.ref_logprobs = [np.zeros(1, np.float32), np.zeros(2, np.float32)]
    anchors = make_batch([3])
    merged = with_anchors(b, anchors)
    assert merged.anchor.tolist() == [False, False, True] and merged.loss_mask.tolist() == [True, True, False]
    assert merged.advantages[2].tolist() == [0.0, 0.0, 0.0] and merged.teacher_logprobs is None
    assert len(set(merged.group_id.tolist())) == 2
