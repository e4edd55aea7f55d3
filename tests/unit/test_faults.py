"""A sample is trained only with a real reward and real reference log-probs: groups whose verifier
or reference actor was lost leave the step's batch and are counted (rlsys/runtime/faults.py, pipeline.py).
Real Ray actors that die and restart: tests/integration/test_actor_restart.py, test_verifier_pool.py
and test_roles.py."""

from types import SimpleNamespace

import contextlib

import numpy as np
import pytest
from omegaconf import OmegaConf

from rlsys.config import RLSysConfig, to_dataclass
from rlsys.data.batch import RolloutBatch
from rlsys.runtime.faults import FaultLog
from rlsys.loop.metrics import StepTimer
from rlsys.loop.pipeline import SamplingError, sample_step, stream_round
from rlsys.verify.details import VerifierDetails


def group(g: int, n: int = 2) -> RolloutBatch:
    return RolloutBatch(
        prompt_id=np.full(n, g), group_id=np.full(n, g), sample_index=np.arange(n),
        prompt_token_ids=[np.array([1, 2])] * n, response_token_ids=[np.array([3, g]) for _ in range(n)],
        behaviour_logprobs=[np.zeros(2, np.float32)] * n, policy_version=np.zeros(n, np.int64),
        finish_reason=["stop"] * n, response_text=[f"{g}"] * n, ground_truth=["1"] * n, data_source=["math"] * n)


class FakeVerifiers:
    """Scores 1.0, except the groups in `lost`: NaN, as VerifierPool gives samples it lost."""

    def __init__(self, lost: set[int]):
        self.lost = lost

    def score(self, batch: RolloutBatch, data=None) -> RolloutBatch:
        batch.reward = np.where(np.isin(batch.group_id, list(self.lost)), np.nan, 1.0).astype(np.float32)
        batch.verifier_details = [VerifierDetails() for _ in range(len(batch))]
        return batch

    def generating(self):  # no colocated reward models here
        return contextlib.nullcontext()


def roles_with(lost: set[int], num_groups: int = 4):
    fleet = SimpleNamespace(stream=lambda data, idx, seed, catch_up: (group(int(g)) for g in idx))
    return SimpleNamespace(fleet=fleet, verifiers=FakeVerifiers(lost), reference=None, teacher=None,
                           learners=SimpleNamespace(push_weights=None), faults=FaultLog())


def config():
    cfg = OmegaConf.structured(RLSysConfig)
    cfg.run_dir = "/tmp/unused"
    return to_dataclass(cfg)


def test_groups_the_verifier_lost_leave_the_batch_and_are_counted():
    roles = roles_with(lost={1, 3})
    batch = stream_round(config(), roles, None, np.arange(4), seed=0, timer=StepTimer())
    assert sorted(set(batch.group_id.tolist())) == [0, 2]
    assert np.isfinite(batch.reward).all() and (batch.reward == 1.0).all()
    assert roles.faults.take() == {"faults/groups_lost_verifier": 2}
    assert roles.faults.take() == {}  # counts are per step


def test_a_step_with_every_group_lost_fails_instead_of_training_on_nothing():
    roles = roles_with(lost={0, 1})
    with pytest.raises(SamplingError, match="lost to verifier or reference actor faults"):
        sample_step(config(), roles, None, iter([np.arange(2)]), seed=0, timer=StepTimer())
