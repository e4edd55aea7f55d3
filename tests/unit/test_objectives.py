"""The skeleton's objective pieces against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from rlsys.config import algorithm_config
from rlsys.learner.advantages import compute_advantages
from rlsys.learner.losses import AGGREGATIONS, KL_ESTIMATORS, Denominators, LossInputs, gspo, ppo_clip
from tests.unit.test_data import make_batch


def advantages(batch, **knobs):
    cfg = algorithm_config(**knobs)
    return compute_advantages(batch, cfg)


def test_grpo_advantages_by_hand():
    b = make_batch([1, 2, 1, 3])
    b.group_id = np.array([0, 0, 0, 0])
    b.reward = np.array([1, 0, 0, 1], dtype=np.float32)
    adv, keep = advantages(b, advantage="grpo", norm_std=True)
    assert keep is None
    std = math.sqrt(sum((r - 0.5) ** 2 for r in [1, 0, 0, 1]) / 3)  # unbiased
    assert adv[0].tolist() == pytest.approx([0.5 / (std + 1e-6)])
    assert adv[3].tolist() == pytest.approx([0.5 / (std + 1e-6)] * 3)
    assert adv[1].tolist() == pytest.approx([-0.5 / (std + 1e-6)] * 2)
    dr, _ = advantages(b, advantage="grpo", norm_std=False)
    assert dr[1].tolist() == pytest.approx([-0.5, -0.5])


def test_grpo_all_correct_or_all_wrong_group_gives_zero():
    b = make_batch([1, 1, 1, 1])  # groups {0,1} and {2,3}
    b.reward = np.array([1, 1, 0, 0], dtype=np.float32)
    assert all(a.tolist() == [0.0] for a in advantages(b, advantage="grpo")[0])
    assert all(a.tolist() == [0.0] for a in advantages(b, advantage="rloo")[0])


def test_rloo_by_hand():
    b = make_batch([1, 1, 1, 1])
    b.group_id = np.zeros(4, np.int64)
    b.reward = np.array([1, 0, 0, 0], dtype=np.float32)
    adv = [a[0] for a in advantages(b, advantage="rloo")[0]]
    assert adv == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])


def test_ppo_clip_masks_exactly_the_clipped_tokens():
    logp_old = torch.zeros(1, 4)
    ratio = torch.tensor([[0.5, 0.9, 1.1, 1.5]])
    x = LossInputs(logp=ratio.log().requires_grad_(), logp_old=logp_old, advantages=torch.ones(1, 4),
                   mask=torch.ones(1, 4, dtype=torch.bool))
    loss, stats = ppo_clip(x, clip_low=0.2, clip_high=0.2)
    # A > 0: only ratio > 1.2 is clipped (loss = -1.2); ratio < 0.8 keeps the unclipped -0.5
    assert loss.detach().tolist()[0] == pytest.approx([-0.5, -0.9, -1.1, -1.2])
    assert stats["clipped_tokens"] == 1
    loss.sum().backward()
    assert (x.logp.grad[0] != 0).tolist() == [True, True, True, False]
    x2 = LossInputs(logp=ratio.log().requires_grad_(), logp_old=logp_old, advantages=-torch.ones(1, 4),
                    mask=torch.ones(1, 4, dtype=torch.bool))
    loss2, stats2 = ppo_clip(x2, clip_low=0.2, clip_high=0.2)
    # A < 0: only ratio < 0.8 is clipped (loss = 0.8)
    assert loss2.detach().tolist()[0] == pytest.approx([0.8, 0.9, 1.1, 1.5])
    assert stats2["clipped_tokens"] == 1


def test_aggregations_differ_on_ragged_lengths():
    loss = torch.tensor([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    d = Denominators(tokens=5, sequences=2, max_len=8)
    assert AGGREGATIONS["token_mean"](loss, mask, d).item() == pytest.approx(8 / 5)
    assert AGGREGATIONS["seq_mean_token_mean"](loss, mask, d).item() == pytest.approx((1 + 4) / 2)
    assert AGGREGATIONS["seq_mean_token_sum_norm"](loss, mask, d).item() == pytest.approx((4 + 4) / (2 * 8))


def test_kl_estimators_values():
    logp, ref = torch.tensor([-1.0]), torch.tensor([-1.5])
    l = -0.5
    assert KL_ESTIMATORS["k1"](logp, ref).item() == pytest.approx(0.5)
    assert KL_ESTIMATORS["k2"](logp, ref).item() == pytest.approx(l * l / 2)
    assert KL_ESTIMATORS["k3"](logp, ref).item() == pytest.approx(math.exp(l) - 1 - l)


def test_psr_nsr_w_reinforce_by_hand():
    b = make_batch([1, 2, 1, 1])
    b.reward = np.array([1, 0, 1, 0], dtype=np.float32)
    adv, keep = advantages(b, advantage="psr")
    assert [a.tolist() for a in adv] == [[1.0], [0.0, 0.0], [1.0], [0.0]] and keep.tolist() == [1, 0, 1, 0]
    adv, keep = advantages(b, advantage="nsr")
    assert [a.tolist() for a in adv] == [[0.0], [-1.0, -1.0], [0.0], [-1.0]] and keep.tolist() == [0, 1, 0, 1]
    adv, keep = advantages(b, advantage="w_reinforce", w_lambda=0.1)
    assert np.concatenate(adv).tolist() == pytest.approx([0.1, -1.0, -1.0, 0.1, -1.0]) and keep is None
    # all-correct and all-wrong groups are NOT zeroed: no normalisation (ALGORITHMS.md)
    b.reward = np.array([1, 1, 0, 0], dtype=np.float32)
    assert [a[0] for a in advantages(b, advantage="w_reinforce", w_lambda=1.0)[0]] == [1.0, 1.0, -1.0, -1.0]


def test_reinforce_pp_return_to_go_and_whitening_by_hand():
    b = make_batch([2, 1])
    b.group_id = np.array([0, 0])
    b.reward = np.array([1.0, 0.0], dtype=np.float32)
    b.behaviour_logprobs = [np.array([-1.0, -2.0], np.float32), np.array([-1.0], np.float32)]
    b.ref_logprobs = [np.array([-1.5, -2.0], np.float32), np.array([-0.5], np.float32)]
    beta = 0.1  # k1 per token: [0.5, 0], [-0.5]; rewards: [-0.05, 1.0], [0.05]; returns: [0.95, 1.0], [0.05]
    adv, _ = advantages(b, advantage="reinforce_pp", kl={"coef": beta, "placement": "reward"})
    g = np.array([0.95, 1.0, 0.05])
    w = (g - g.mean()) / (g.std() + 1e-6)
    assert np.concatenate(adv) == pytest.approx(w, abs=1e-5)
    adv, _ = advantages(b, advantage="reinforce_pp_baseline", kl={"coef": beta, "placement": "reward"})
    g = np.array([-0.05 + 0.5, 0.5, 0.05 - 0.5])  # outcome minus group mean 0.5
    assert np.concatenate(adv) == pytest.approx((g - g.mean()) / (g.std() + 1e-6), abs=1e-5)


def test_kl_in_reward_adds_k1_return_to_go():
    b = make_batch([2, 2])
    b.group_id = np.array([0, 0])
    b.reward = np.array([1.0, 0.0], dtype=np.float32)
    b.behaviour_logprobs = [np.array([-1.0, -1.0], np.float32)] * 2
    b.ref_logprobs = [np.array([-2.0, -1.5], np.float32)] * 2  # k1 = [1, 0.5] -> return-to-go [1.5, 0.5]
    plain, _ = advantages(b, advantage="grpo", norm_std=False)
    shaped, _ = advantages(b, advantage="grpo", norm_std=False, kl={"coef": 0.2, "placement": "reward"})
    assert (plain[0] - shaped[0]).tolist() == pytest.approx([0.3, 0.1])


def softmax_grads(correct_set, advantage):
    """E_{y~pi}[grad_z of the PPO surrogate at ratio 1] with A(y) = advantage on correct_set."""
    z = torch.tensor([0.3, -0.2, 1.0, 0.1], dtype=torch.float64, requires_grad=True)
    pi = torch.softmax(z, 0).detach()
    total = torch.zeros(4, dtype=torch.float64)
    for y in correct_set:
        logp = torch.log_softmax(z, 0)[y].reshape(1, 1)
        x = LossInputs(logp=logp, logp_old=logp.detach(), advantages=torch.full((1, 1), advantage, dtype=torch.float64),
                       mask=torch.ones(1, 1, dtype=torch.bool))
        (g,) = torch.autograd.grad(ppo_clip(x, 0.2, 0.2)[0].sum(), z)
        total += pi[y] * g  # expectation over y ~ pi
    return -total, pi  # descent direction


def test_psr_nsr_logit_gradient_identity():
    """ALGORITHMS.md: PSR pushes the sampled logit by +pi(1-pi) and every other v by -pi_v*pi_y;
    NSR is the exact opposite, handing mass to the others in proportion to their prior."""
    y = 2
    psr_dir, pi = softmax_grads([y], +1.0)
    nsr_dir, _ = softmax_grads([y], -1.0)
    expected = -pi * pi[y]
    expected[y] = pi[y] * (1 - pi[y])
    assert psr_dir.tolist() == pytest.approx(expected.tolist())
    assert nsr_dir.tolist() == pytest.approx((-expected).tolist())
    others = [v for v in range(4) if v != y]
    share = nsr_dir[others] / nsr_dir[others].sum()
    assert share.tolist() == pytest.approx((pi[others] / pi[others].sum()).tolist())  # prior-proportional
    # and the expected gradient is exactly the gradient of L_PSR = -pi(y)
    z = torch.tensor([0.3, -0.2, 1.0, 0.1], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(-torch.softmax(z, 0)[y], z)
    assert psr_dir.tolist() == pytest.approx((-g).tolist())


def expected_kl_loss_grad(estimator):
    """E_{y ~ pi_theta}[grad_theta k(y)] with the sampling distribution held fixed (a loss on samples)."""
    theta = torch.tensor([0.5, -0.3, 0.2, 0.0, -1.0], dtype=torch.float64, requires_grad=True)
    ref = torch.log_softmax(torch.tensor([0.1, 0.4, -0.5, 0.3, 0.2], dtype=torch.float64), 0)
    logp = torch.log_softmax(theta, 0)
    pi = logp.exp().detach()
    loss = (pi * KL_ESTIMATORS[estimator](logp, ref)).sum()
    (g,) = torch.autograd.grad(loss, theta)
    return g, theta, ref


def test_k2_loss_gradient_is_reverse_kl_gradient():
    g, theta, ref = expected_kl_loss_grad("k2")
    logp = torch.log_softmax(theta, 0)
    (rev,) = torch.autograd.grad((logp.exp() * (logp - ref)).sum(), theta)  # KL(pi || ref)
    assert g.tolist() == pytest.approx(rev.tolist(), abs=1e-12)


def test_k3_loss_gradient_is_forward_kl_gradient():
    g, theta, ref = expected_kl_loss_grad("k3")
    (fwd,) = torch.autograd.grad((ref.exp() * (ref - torch.log_softmax(theta, 0))).sum(), theta)  # KL(ref || pi)
    logp = torch.log_softmax(theta, 0)
    (rev,) = torch.autograd.grad((logp.exp() * (logp - ref)).sum(), theta)
    assert g.tolist() == pytest.approx(fwd.tolist(), abs=1e-12)
    assert not np.allclose(g.numpy(), rev.numpy())  # and genuinely not the reverse one


def test_k1_loss_gradient_is_zero_in_expectation():
    g, *_ = expected_kl_loss_grad("k1")
    assert g.abs().max().item() < 1e-12


def test_dual_clip_bounds_negative_advantage_loss():
    ratio = torch.tensor([[5.0, 2.0]])
    x = LossInputs(logp=ratio.log(), logp_old=torch.zeros(1, 2), advantages=-torch.ones(1, 2),
                   mask=torch.ones(1, 2, dtype=torch.bool))
    assert ppo_clip(x, 0.2, 0.2)[0].tolist()[0] == pytest.approx([5.0, 2.0])
    assert ppo_clip(x, 0.2, 0.2, dual_clip=3.0)[0].tolist()[0] == pytest.approx([3.0, 2.0])


def test_gspo_uses_the_sequence_ratio():
    logp_old = torch.zeros(2, 3)
    logp = torch.tensor([[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]])  # seq 0: mean log-ratio 0.2 (last token padded)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    logp[0, 2] = 9.0  # padding must not count
    x = LossInputs(logp=logp, logp_old=logp_old, advantages=torch.ones(2, 3), mask=mask)
    loss, _ = gspo(x, clip_low=3e-4, clip_high=4e-4)
    s0 = math.exp(0.15)  # mean of 0.1 and 0.2
    assert loss[0, 0].item() == pytest.approx(-min(s0, 1 + 4e-4))
    assert loss[1].tolist() == pytest.approx([-1.0] * 3)
