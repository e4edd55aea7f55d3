"""The skeleton's objective pieces against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from rlsys.learner.advantages import compute_advantages
from rlsys.learner.objectives import AGGREGATIONS, KL_ESTIMATORS, Denominators, LossInputs, ppo_clip
from tests.unit.test_data import make_batch


def test_grpo_advantages_by_hand():
    b = make_batch([1, 2, 1, 3])
    b.group_id = np.array([0, 0, 0, 0])
    b.reward = np.array([1, 0, 0, 1], dtype=np.float32)
    adv = compute_advantages(b, "grpo", norm_std=True)
    std = math.sqrt(sum((r - 0.5) ** 2 for r in [1, 0, 0, 1]) / 3)  # unbiased
    assert adv[0].tolist() == pytest.approx([0.5 / (std + 1e-6)])
    assert adv[3].tolist() == pytest.approx([0.5 / (std + 1e-6)] * 3)
    assert adv[1].tolist() == pytest.approx([-0.5 / (std + 1e-6)] * 2)
    dr = compute_advantages(b, "grpo", norm_std=False)
    assert dr[1].tolist() == pytest.approx([-0.5, -0.5])


def test_grpo_all_correct_or_all_wrong_group_gives_zero():
    b = make_batch([1, 1, 1, 1])  # groups {0,1} and {2,3}
    b.reward = np.array([1, 1, 0, 0], dtype=np.float32)
    assert all(a.tolist() == [0.0] for a in compute_advantages(b, "grpo"))


def test_rloo_by_hand():
    b = make_batch([1, 1, 1, 1])
    b.group_id = np.zeros(4, np.int64)
    b.reward = np.array([1, 0, 0, 0], dtype=np.float32)
    adv = [a[0] for a in compute_advantages(b, "rloo")]
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
