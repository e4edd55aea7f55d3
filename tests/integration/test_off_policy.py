"""PPO mini-batch updates and rollout correction in a real learner group (Ray, FSDP2 on gloo, the tiny
model; no rollout engine: the batch is built here, so behaviour log-probs can be set off-policy at will).
One learner group for the module, reset to the base weights between tests."""

import copy

import numpy as np
import pytest
import ray
from omegaconf import OmegaConf

from rlsys.config import RLSysConfig, get_key, to_dataclass
from rlsys.config.validation import validate
from rlsys.data.batch import RolloutBatch
from rlsys.learner.advantages import compute_advantages
from rlsys.learner.objective import report, report_correction
from rlsys.learner.role_config import learner_role_config
from rlsys.loop.prepare import prepare_data_and_model

PROMPTS, N, LENGTH = 16, 4, 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from rlsys.learner.group import LearnerGroup
    from rlsys.learner.worker import LearnerWorker

    cfg = OmegaConf.structured(RLSysConfig)
    cfg.run_dir = str(tmp_path_factory.mktemp("run"))
    cfg.algorithm.optim.lr = 3e-3  # large: one update visibly moves the ratio
    cfg.trainer.prompts_per_step, cfg.rollout.n = PROMPTS, N
    cfg = validate(to_dataclass(cfg))
    train, _, model_path, tok = prepare_data_and_model(cfg)
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False)
    lc = learner_role_config(cfg)
    group = LearnerGroup([ray.remote(LearnerWorker).options(num_cpus=0.5).remote(lc, model_path, 0, 1)], lc)
    batch = make_batch(cfg, train, np.random.default_rng(0))
    batch.behaviour_logprobs = group._per_sample("old_logprobs", batch)  # on-policy: behaviour = the learner
    yield cfg, group, batch
    group.shutdown()
    ray.shutdown()


def make_batch(cfg, train, rng) -> RolloutBatch:
    """PROMPTS groups of N responses of LENGTH random tokens, rewards 0/1 (every group mixed)."""
    n = PROMPTS * N
    pid = np.repeat(np.arange(PROMPTS), N)
    batch = RolloutBatch(
        prompt_id=pid, group_id=pid, sample_index=np.tile(np.arange(N), PROMPTS),
        prompt_token_ids=[train.prompt_token_ids[i] for i in pid],
        response_token_ids=[rng.integers(3, 20, LENGTH) for _ in range(n)],
        behaviour_logprobs=[np.zeros(LENGTH, np.float32) for _ in range(n)], policy_version=np.zeros(n, np.int64),
        finish_reason=["length"] * n, response_text=[""] * n, ground_truth=["0"] * n, data_source=["arithmetic"] * n,
        reward=np.tile(np.array([1, 0, 0, 1], np.float32), PROMPTS))
    batch.advantages, batch.loss_mask = compute_advantages(batch, cfg.algorithm)
    return batch


def train(group, cfg, batch, **knobs):
    cfg = copy.deepcopy(cfg)
    for key, value in knobs.items():
        *groups, name = key.split("__")  # algorithm__rollout_correction__cap: cfg.algorithm.rollout_correction.cap
        setattr(get_key(cfg, ".".join(groups)), name, value)
    group.reset(learner_role_config(validate(cfg)))
    stats = group.train(batch)
    return stats, {**report(stats, cfg.algorithm), **report_correction(stats)}


def test_one_update_keeps_the_ratio_at_one(setup):
    cfg, group, batch = setup
    stats, m = train(group, cfg, batch)
    assert stats["actor/ppo_updates"] == 1 and m["actor/pg_clipfrac"] == 0  # logp_old is this very forward's value
    assert m["rollout_corr/is_weight_mean"] == 1 and m["rollout_corr/kl_k3"] < 1e-9  # behaviour = learner


def test_second_epoch_moves_the_ratio_and_the_clip_acts_as_computed_by_hand(setup):
    cfg, group, batch = setup
    # reference: one update from the base weights, then the log-probs the second update will start from
    train(group, cfg, batch)
    logp1 = group._per_sample("old_logprobs", batch)
    stats, m = train(group, cfg, batch, learner__ppo_epochs=2)
    assert stats["actor/ppo_updates"] == 2
    old = batch.behaviour_logprobs  # = the learner's base log-probs: logp_old of both epochs
    clipped = tokens = 0
    for lp1, lp0, adv in zip(logp1, old, batch.advantages):
        r = np.exp(lp1 - lp0)
        assert np.abs(r - 1).max() > 1e-3  # the ratio has left 1 after the first update
        clipped += int(((adv > 0) & (r > 1.2)).sum() + ((adv < 0) & (r < 0.8)).sum())
        tokens += len(r)
    # first update: nothing clipped; second: `clipped` tokens; stats average over the two updates
    expected = clipped / 2 / tokens
    print(f"\npg_clipfrac {m['actor/pg_clipfrac']:.4f}, by hand {expected:.4f} ({clipped} of {tokens} tokens)")
    assert clipped > 0 and m["actor/pg_clipfrac"] > 0
    assert m["actor/pg_clipfrac"] == pytest.approx(expected, abs=1.5 / tokens)


def test_mini_batches_take_one_optimizer_step_each(setup):
    cfg, group, batch = setup
    stats, m = train(group, cfg, batch, learner__ppo_mini_batch_size=len(batch) // 4, learner__ppo_epochs=2)
    assert stats["actor/ppo_updates"] == 8 and m["actor/pg_clipfrac"] > 0


def test_off_policy_behaviour_is_corrected_with_truncated_weights(setup):
    """Behaviour log-probs 0.5 below the learner's on the first 3 tokens of each response: rho = e^0.5
    = 1.65 there (kept under the cap 2, or truncated at cap 1.5), 1 elsewhere."""
    cfg, group, batch = setup
    off = batch.select(np.arange(len(batch)))
    off.behaviour_logprobs = [b - 0.5 * (np.arange(LENGTH) < 3) for b in batch.behaviour_logprobs]
    _, m = train(group, cfg, off, algorithm__rollout_correction__mode="tis")
    assert m["rollout_corr/kl_k1"] == pytest.approx(0.25, abs=1e-4)  # mean(logp_old - logp_behaviour)
    assert m["rollout_corr/is_weight_mean"] == pytest.approx((np.exp(0.5) + 1) / 2, abs=1e-4)
    assert m["rollout_corr/is_weight_max"] == pytest.approx(np.exp(0.5), abs=1e-4)
    assert m["rollout_corr/truncated_frac"] == 0
    _, m = train(group, cfg, off, algorithm__rollout_correction__mode="tis", algorithm__rollout_correction__cap=1.5)
    assert m["rollout_corr/truncated_frac"] == pytest.approx(0.5) and m["rollout_corr/is_weight_max"] == 1.5
    _, m = train(group, cfg, off, algorithm__rollout_correction__mode="icepop", algorithm__rollout_correction__level="sequence")
    # sequence ratio e^1.5 = 4.48, inside [0.5, 5]: every token weighs 4.48
    assert m["rollout_corr/is_weight_mean"] == pytest.approx(np.exp(1.5), rel=1e-4)
    _, m = train(group, cfg, off, algorithm__rollout_correction__bypass=True, algorithm__rollout_correction__mode="none")
    assert m["rollout_corr/kl_k1"] == 0  # logp_old = the behaviour log-probs: no mismatch left to correct
