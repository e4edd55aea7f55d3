"""rlsys/loop/batches.py, the batch source between the fleet and the learners, with a fake fleet and learners:
the schedule of versions for k = 0, 1, 2, the overlap of generation with training, the staleness
filter and its counts, and errors of the producer reaching the controller."""

import time

import numpy as np
import pytest

from rlsys.loop.metrics import StepTimer
from rlsys.sync.result import SyncResult
from rlsys.loop.batches import Rollouts
from tests.unit.test_data import make_batch


class FakeFleet:
    """Generates a 4-sample batch stamped with the version it serves; pushes set that version."""

    def __init__(self, gen_seconds=0.0):
        self.version, self.gen_seconds, self.log, self.busy = 0, gen_seconds, [], False

    def produce(self, step, timer):
        assert not self.busy, "two rounds at once"
        self.busy = True
        with timer("generate"):
            self.log.append(("generate", step, self.version))
            time.sleep(self.gen_seconds)
        self.busy = False
        batch = make_batch([1, 2, 1, 3])
        batch.policy_version = np.full(4, self.version)
        return batch, {"round_of": step}

    def push(self, version):
        assert not self.busy, "weights pushed while the fleet generates"
        self.log.append(("push", version))
        self.version = version
        return SyncResult(bytes=0, seconds=0.0)


def loop(k, steps=5, train_seconds=0.0, gen_seconds=0.0):
    """The controller's loop: take the step's batch, train (sleep), sync."""
    fleet, trained = FakeFleet(gen_seconds), []
    with Rollouts(fleet.produce, fleet.push, k, steps) as rollouts:
        version = 0
        for step in range(1, steps + 1):
            batch, extra = rollouts.take(step, version, StepTimer())
            assert extra["round_of"] == step
            trained.append((step, version, batch.policy_version.tolist(), extra))
            time.sleep(train_seconds)
            rollouts.sync(version + 1)
            version += 1
    return fleet, trained


@pytest.mark.parametrize("k", [0, 1, 2])
def test_each_step_trains_samples_at_most_k_versions_old(k):
    fleet, trained = loop(k)
    for step, version, versions, extra in trained:
        # the schedule: step s's batch comes from version max(0, s - 1 - k), trained by version s - 1
        assert versions == [max(0, step - 1 - k)] * 4
        assert version - min(versions) <= k
        assert extra["training/off_policy/staleness_max"] == min(step - 1, k)
        assert extra["training/off_policy/dropped_samples"] == 0
    assert [e for e in fleet.log if e[0] == "push"] == [("push", v) for v in range(1, 6)]


def test_k1_generates_the_next_step_while_the_learners_train():
    t0 = time.perf_counter()
    fleet, trained = loop(1, steps=4, train_seconds=0.3, gen_seconds=0.3)
    overlapped = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop(0, steps=4, train_seconds=0.3, gen_seconds=0.3)
    serial = time.perf_counter() - t0
    # round 2 is generated before the push of version 1 (during step 1's training)
    assert fleet.log.index(("generate", 2, 0)) < fleet.log.index(("push", 1))
    assert serial > 2.3 and overlapped < serial - 0.6  # 4 x (0.3 + 0.3) serial; ~5 x 0.3 overlapped


def test_stale_samples_are_dropped_and_counted():
    rollouts = Rollouts(None, None, max_staleness=1, steps=3)
    batch = make_batch([1, 2, 1, 3])
    batch.policy_version = np.array([3, 2, 1, 0])
    kept, m = rollouts.within_staleness(batch, version=3)  # 3 - 1 = 2 and 3 - 0 = 3 exceed k = 1
    assert kept.policy_version.tolist() == [3, 2] and kept.response_lengths.tolist() == [1, 2]
    assert m["training/off_policy/dropped_samples"] == 2 and m["training/off_policy/dropped_total"] == 2
    assert m["training/off_policy/staleness_max"] == 1 and m["training/off_policy/staleness_mean"] == 0.5
    _, m = rollouts.within_staleness(batch, version=2)
    assert m["training/off_policy/dropped_samples"] == 1 and m["training/off_policy/dropped_total"] == 3


def test_a_producer_error_reaches_the_controller():
    def produce(step, timer):
        if step == 2:
            raise RuntimeError("engine fell over")
        batch = make_batch([1])
        batch.policy_version = np.zeros(1, np.int64)
        return batch, {}

    with pytest.raises(RuntimeError, match="engine fell over"):
        with Rollouts(produce, lambda v: {}, 1, 4) as rollouts:
            rollouts.take(1, 0, StepTimer())
            rollouts.sync(1)  # waits for round 2, which failed


class InFlightFleet:
    """Samples each response token at its own moment, stamped with the version served then; a push
    lands whenever the controller syncs (in flight: the round is not waited for)."""

    def __init__(self):
        self.version, self.log = 0, []

    def produce(self, step, timer):
        self.log.append(("start", step))
        versions = []
        for _ in range(8):
            versions.append(self.version)
            time.sleep(0.04)
        self.log.append(("end", step))
        batch = make_batch([8, 8])
        batch.token_versions = [np.array(versions), np.array(versions)]
        batch.policy_version = np.full(2, min(versions))  # a sample is as old as its oldest token
        return batch, {}

    def push(self, version):
        self.log.append(("push", version))
        self.version = version
        return SyncResult(bytes=0, seconds=0.0)


def test_in_flight_updates_land_inside_a_round_and_each_token_keeps_its_version():
    fleet, k, seen = InFlightFleet(), 1, []
    with Rollouts(fleet.produce, fleet.push, k, 5, in_flight=True) as rollouts:
        for step in range(1, 6):
            batch, extra = rollouts.take(step, step - 1, StepTimer())
            seen.append((step - 1, batch.token_versions[0], extra))
            time.sleep(0.1)  # training
            rollouts.sync(step)
    log = fleet.log
    # a push between the start and the end of one round: the weights changed mid-round
    assert any(log.index(("start", s)) < log.index(("push", v)) < log.index(("end", s))
               for s in range(2, 6) for v in range(1, 5)), log
    assert any(len(set(v.tolist())) > 1 for _, v, _ in seen)  # some response was sampled by two versions
    for trained_by, versions, extra in seen:
        assert (trained_by - versions).max() <= k  # no token older than k versions
        assert extra["training/off_policy/token_staleness_mean"] == pytest.approx((trained_by - versions).mean())
