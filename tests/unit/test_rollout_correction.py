"""Rollout correction (TIS / MIS / IcePop at token, sequence and geometric level, decoupled PPO) and the
mini-batch split, against hand-derived values on a constructed off-policy batch."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rlsys.config import ConfigError, RLSysConfig, get_key
from rlsys.config.validation import validate
from rlsys.learner.group import mini_batches, num_mini_batches
from rlsys.learner.losses import LossInputs, correction_mode, correction_weights, ppo_clip
from rlsys.learner.role_config import learner_role_config
from rlsys.learner.worker import LearnerWorker

# Two responses: rho_t = pi_old / pi_behaviour = [0.25, 1, 4] and [3, 0.5] (+ one padding position).
RHO = torch.tensor([[0.25, 1.0, 4.0], [3.0, 0.5, 1.0]], dtype=torch.float64)
MASK = torch.tensor([[True, True, True], [True, True, False]])
LOGP_BEH = torch.log(torch.tensor([[0.4, 0.5, 0.1], [0.2, 0.8, 0.3]], dtype=torch.float64))
LOGP_OLD = LOGP_BEH + torch.log(RHO)
KNOBS = {"tis": {"rollout_correction_cap": 2.0},
         "mis": {"rollout_correction_low": 0.5, "rollout_correction_high": 5.0},
         "icepop": {"rollout_correction_low": 0.5, "rollout_correction_high": 5.0}, "none": {}}


def close(t: torch.Tensor, expected) -> bool:
    return torch.allclose(t.double(), torch.tensor(expected, dtype=torch.float64))


def weights(mode, level="token", old=LOGP_OLD):
    return correction_weights(old, LOGP_BEH, MASK, mode, level, KNOBS[mode])


@pytest.mark.parametrize("mode,expected,cut", [
    ("tis", [[0.25, 1, 2], [2, 0.5, 0]], ("rc_truncated", 2)),  # min(rho, 2): 4 and 3 truncated
    ("mis", [[0, 1, 1], [1, 1, 0]], ("rc_masked", 1)),  # rejection: 0.25 < 0.5 leaves, the rest weigh 1
    ("icepop", [[0, 1, 4], [3, 0.5, 0]], ("rc_masked", 1)),  # rho kept inside [0.5, 5], 0 outside
    ("none", [[1, 1, 1], [1, 1, 0]], ("rc_masked", 0)),
])
def test_token_level_weights_by_hand(mode, expected, cut):
    w, stats = weights(mode)
    assert close(w, expected)
    assert stats[cut[0]] == cut[1]
    assert stats["rc_weight"] == pytest.approx(sum(map(sum, expected)))
    assert stats["rc_weight_max"] == pytest.approx(max(map(max, expected)))
    rhos = [0.25, 1.0, 4.0, 3.0, 0.5]
    assert stats["rc_k1"] == pytest.approx(sum(math.log(r) for r in rhos))  # sum of logp_old - logp_behaviour
    assert stats["rc_k3"] == pytest.approx(sum(r - 1 - math.log(r) for r in rhos))  # k3 with l = log rho


def test_sequence_and_geometric_levels_by_hand():
    # sequence ratios: 0.25 * 1 * 4 = 1 and 3 * 0.5 = 1.5; geometric: 1 ** (1/3) = 1 and 1.5 ** (1/2)
    w, _ = weights("tis", "sequence")
    assert close(w, [[1, 1, 1], [1.5, 1.5, 0]])
    w, _ = weights("icepop", "geometric")
    assert close(w, [[1, 1, 1], [math.sqrt(1.5), math.sqrt(1.5), 0]])
    far = LOGP_OLD.clone()
    far[1, 0] = LOGP_BEH[1, 0] + math.log(12.0)  # sequence ratio 12 * 0.5 = 6 > 5: the whole sequence leaves
    w, stats = weights("mis", "sequence", far)
    assert close(w, [[1, 1, 1], [0, 0, 0]])
    assert stats["rc_masked"] == 2  # both of its tokens
    w, stats = weights("tis", "sequence", far)
    assert close(w, [[1, 1, 1], [2, 2, 0]]) and stats["rc_truncated"] == 2


@pytest.mark.parametrize("mode", ["tis", "mis", "icepop"])
@pytest.mark.parametrize("level", ["token", "sequence", "geometric"])
def test_on_policy_weights_are_one_and_change_nothing(mode, level):
    """behaviour = learner: every weight is exactly 1, so the corrected loss equals the plain one."""
    w, stats = correction_weights(LOGP_BEH, LOGP_BEH, MASK, mode, level, KNOBS[mode])
    assert torch.equal(w, MASK.double())
    assert stats["rc_k1"] == 0 and stats["rc_k3"] == 0 and stats["rc_truncated"] == stats["rc_masked"] == 0
    cfg = RLSysConfig()
    cfg.algorithm.rollout_correction.mode, cfg.algorithm.rollout_correction.level = mode, level
    x = LossInputs(logp=LOGP_BEH.clone().requires_grad_(), logp_old=LOGP_BEH, advantages=torch.ones_like(RHO),
                   mask=MASK, logp_behaviour=LOGP_BEH)
    loss, _ = ppo_clip(x, 0.2, 0.2)
    corrected = LearnerWorker._rollout_correction(SimpleNamespace(cfg=learner_role_config(cfg)), loss, x, MASK, {})
    assert torch.equal(corrected * MASK, loss * MASK)


def test_decoupled_ppo_by_hand():
    """Async default (auto -> token TIS): L_t = -min(rho_t, C) * min(r_t A, clip(r_t) A), r against logp_old."""
    cfg = RLSysConfig()
    cfg.trainer.max_staleness = 1
    assert correction_mode(cfg.algorithm, 1) == "tis" and correction_mode(cfg.algorithm, 0) == "none"
    r = torch.tensor([[1.5, 0.9, 1.1], [1.0, 0.7, 1.0]], dtype=torch.float64)  # pi_theta / pi_old
    x = LossInputs(logp=(LOGP_OLD + r.log()).requires_grad_(), logp_old=LOGP_OLD, mask=MASK,
                   advantages=torch.tensor([[1.0] * 3, [-1.0] * 3], dtype=torch.float64), logp_behaviour=LOGP_BEH)
    loss, stats = ppo_clip(x, 0.2, 0.2)
    stats = {}
    out = LearnerWorker._rollout_correction(SimpleNamespace(cfg=learner_role_config(cfg)), loss, x, MASK, stats)
    # row 1 (A = +1): -min(r, 1.2) * min(rho, 2) = -1.2*0.25, -0.9*1, -1.1*2
    # row 2 (A = -1): max(r, 0.8) * min(rho, 2) = 1.0*2, 0.8*0.5
    assert close((out * MASK), [[-0.3, -0.9, -2.2], [2.0, 0.4, 0.0]])
    assert stats["rc_truncated"] == 2


def test_mini_batches_split_the_batch_once_per_epoch():
    assert num_mini_batches(512, 0) == 1 and num_mini_batches(512, 128) == 4 and num_mini_batches(10, 4) == 3
    assert [m.tolist() for m in mini_batches(6, 1, (1, 0))] == [list(range(6))]
    parts = mini_batches(10, 3, (2, 0))
    assert sorted(np.concatenate(parts).tolist()) == list(range(10)) and [len(p) for p in parts] == [4, 3, 3]
    assert [p.tolist() for p in mini_batches(10, 3, (2, 1))] != [p.tolist() for p in parts]  # reshuffled per epoch


@pytest.mark.parametrize("key,value,match", [
    ("learner.ppo_epochs", 0, "learner.ppo_epochs"),
    ("learner.ppo_mini_batch_size", 1, "learner.ppo_mini_batch_size"),  # fewer than learner.world_size=2
    ("learner.ppo_mini_batch_size", 100_000, "learner.ppo_mini_batch_size"),
    ("trainer.max_staleness", -1, "trainer.max_staleness"),
    ("algorithm.rollout_correction.mode", "is", "algorithm.rollout_correction.mode"),
    ("algorithm.rollout_correction.level", "word", "algorithm.rollout_correction.level"),
    ("algorithm.rollout_correction.cap", 0.5, "algorithm.rollout_correction.cap"),
    ("algorithm.rollout_correction.low", 1.5, "algorithm.rollout_correction.low"),
])
def test_bad_knobs_fail_naming_the_key(key, value, match):
    cfg = RLSysConfig(run_dir="/tmp/x")
    *groups, name = key.split(".")
    setattr(get_key(cfg, ".".join(groups)), name, value)
    with pytest.raises(ConfigError, match=f"'{match}'"):
        validate(cfg)


def test_conflicting_knobs_fail():
    cfg = RLSysConfig(run_dir="/tmp/x")
    cfg.algorithm.rollout_correction.mode, cfg.algorithm.rollout_correction.bypass = "tis", True
    with pytest.raises(ConfigError, match=r"rollout_correction\.bypass"):
        validate(cfg)
    cfg = RLSysConfig(run_dir="/tmp/x")
    cfg.trainer.max_staleness, cfg.cluster.colocate = 1, True
    cfg.cluster.rollout.gpus = cfg.cluster.learner.gpus = 0.5  # colocation is a GPU mode
    cfg.rollout.num_engines = cfg.learner.world_size
    with pytest.raises(ConfigError, match="'trainer.max_staleness'.*colocate"):
        validate(cfg)
