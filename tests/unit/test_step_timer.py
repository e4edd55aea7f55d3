"""StepTimer: stage times are unions of intervals, so overlapping stages show in their sum."""

import threading
import time

import numpy as np
import pytest

from rlsys.loop.metrics import StepTimer, union_length


def test_union_length_merges_overlaps_and_gaps():
    assert union_length([]) == 0.0
    assert union_length([(0, 1), (0.5, 2), (3, 4)]) == pytest.approx(3.0)
    assert union_length([(3, 4), (0, 10)]) == pytest.approx(10.0)  # nested, unsorted


def test_overlapping_stages_sum_to_more_than_wall():
    timer = StepTimer()

    def work(stage):
        with timer(stage):
            time.sleep(0.2)

    threads = [threading.Thread(target=work, args=(s,)) for s in ("generate", "verify", "verify")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    s, wall = timer.seconds, timer.total()
    assert 0.2 <= s["verify"] < 0.38  # two concurrent 0.2 s verify calls count once, not 0.4 s
    assert s["generate"] + s["verify"] > 1.2 * wall  # ran at the same time


def test_sort_groups_makes_arrival_order_irrelevant():
    from rlsys.data.batch import RolloutBatch
    from rlsys.rollout.fleet import sort_groups

    def group(g, n=3):
        return RolloutBatch(
            prompt_id=np.full(n, 10 + g), group_id=np.full(n, g), sample_index=np.arange(n),
            prompt_token_ids=[np.array([g])] * n, response_token_ids=[np.array([g, i]) for i in range(n)],
            behaviour_logprobs=[np.zeros(2, np.float32)] * n, policy_version=np.zeros(n, np.int64),
            finish_reason=["stop"] * n, response_text=[f"{g}.{i}" for i in range(n)], ground_truth=["1"] * n,
            data_source=["arithmetic"] * n)

    a = sort_groups(RolloutBatch.concat([group(2), group(0), group(1)]))
    b = sort_groups(RolloutBatch.concat([group(1), group(2), group(0)]))
    assert a.group_id.tolist() == b.group_id.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert a.response_text == b.response_text
    assert (a.prompt_id == a.group_id + 10).all()
