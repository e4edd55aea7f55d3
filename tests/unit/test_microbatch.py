"""Micro-batch planning by hand: token budgets, balance, the count every rank runs. That packed
token-budget micro-batches train exactly like padded fixed-size ones is checked on a real learner
worker in tests/integration/test_learner_microbatch.py."""

import numpy as np

from rlsys.config import RLSysConfig
from rlsys.data.batch import RolloutBatch
from rlsys.learner import microbatch as M


# ---- planning --------------------------------------------------------------------------------
def test_count_by_samples_and_by_tokens():
    lengths = np.array([50, 40, 30, 20, 10])
    assert M.micro_batch_count(lengths, micro_batch_size=2, max_tokens=0) == 3
    # first fit, longest first, bins of <= 60: [50, 10], [40, 20], [30]
    assert M.first_fit(lengths, 60) == [[0, 4], [1, 3], [2]]
    assert M.micro_batch_count(lengths, micro_batch_size=2, max_tokens=60) == 3
    assert M.micro_batch_count(lengths, micro_batch_size=2, max_tokens=1000) == 1
    assert M.micro_batch_count(np.array([200, 5]), 2, max_tokens=100) == 2  # too long: a micro-batch of its own


def test_plan_is_a_partition_within_budget_and_balanced():
    rng = np.random.default_rng(0)
    for _ in range(50):
        lengths = rng.integers(20, 170, rng.integers(1, 40))
        budget = int(rng.integers(170, 1200))
        k = M.micro_batch_count(lengths, 8, budget) + int(rng.integers(0, 3))  # the group may ask for more
        bins = M.plan(lengths, k, budget)
        assert len(bins) == k
        assert sorted(np.concatenate(bins).tolist()) == list(range(len(lengths)))
        assert all(lengths[b].sum() <= budget for b in bins if len(b) > 1)
    # balanced: 4 samples of 100 and 4 of 10 into 2 micro-batches -> 220 tokens each
    bins = M.plan(np.array([100, 100, 100, 100, 10, 10, 10, 10]), 2, 1000)
    assert [int(np.array([100] * 4 + [10] * 4)[b].sum()) for b in bins] == [220, 220]


def test_plan_without_budget_is_the_fixed_split():
    assert [b.tolist() for b in M.plan(np.arange(5), 3, 0)] == [[0, 1], [2, 3], [4]]


# ---- sharding across ranks ---------------------------------------------------------------------
def rollouts(n: int = 11, seed: int = 0) -> RolloutBatch:
    rng = np.random.default_rng(seed)
    plen, rlen = rng.integers(2, 15, n), rng.integers(1, 16, n)
    per_token = lambda scale: [(rng.standard_normal(r) * scale).astype(np.float32) for r in rlen]  # noqa: E731
    ids = lambda m: rng.integers(3, 90, m)  # noqa: E731
    return RolloutBatch(
        prompt_id=np.arange(n), group_id=np.arange(n) // 4, sample_index=np.arange(n) % 4,
        prompt_token_ids=[ids(p) for p in plen], response_token_ids=[ids(r) for r in rlen],
        behaviour_logprobs=[v - 4.0 for v in per_token(0.1)], policy_version=np.zeros(n, np.int64),
        finish_reason=["stop"] * n, response_text=[""] * n, ground_truth=[""] * n, data_source=[""] * n,
        reward=rng.integers(0, 2, n).astype(np.float32), ref_logprobs=[v - 4.0 for v in per_token(0.1)],
        advantages=per_token(1.0))


def test_group_gives_every_rank_the_largest_count():
    """Shards balanced by tokens; the rank that needs most micro-batches sets the count for all."""
    from types import SimpleNamespace

    from rlsys.learner.group import LearnerGroup

    lengths = np.array([100, 100, 100, 30, 30, 30, 30, 30])  # prompt + response tokens per sample
    cfg = RLSysConfig()
    cfg.learner.max_tokens_per_micro_batch = 120
    shards, k = LearnerGroup._shards(SimpleNamespace(actors=[0, 1], cfg=cfg), lengths)
    # longest first to the lighter rank: 230 tokens [100, 100, 30] and 220 tokens [100, 30 x 4]
    assert sorted(int(lengths[s].sum()) for s in shards) == [220, 230]
    # under 120 tokens: [100], [100], [30] on one rank, [100], [30 x 4] on the other -> both run 3
    assert k == 3
    for s in shards:
        bins = M.plan(lengths[s], k, 120)
        assert len(bins) == 3 and all(len(b) for b in bins) and all(lengths[s][b].sum() <= 120 for b in bins)
    cfg.learner.max_tokens_per_micro_batch, cfg.learner.micro_batch_size = 0, 2
    assert LearnerGroup._shards(SimpleNamespace(actors=[0, 1], cfg=cfg), lengths)[1] == 3  # 5 samples / 2
