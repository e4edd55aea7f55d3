"""A step's batch as the controller sees it: per-sample metadata, with the data itself elsewhere.

The rollout manager (rlsys/rollout/manager.py) keeps each step's RolloutBatch in its own process and
hands the controller a `BatchMeta`: ids, rewards, lengths, versions, statuses; never token arrays or
texts. The learner group moves the data by reference: it asks the holder for the rows of each rank
as Ray object references, which the ranks fetch themselves, and hands the ranks' per-sample results
(values, log-probs) back to the holder the same way. One interface, two holders:
  LocalBatch   a RolloutBatch in this process (tests, tools, the learner group used on its own)
  (the rollout manager's StepRef, rlsys/rollout/manager.py)  a batch held by the manager actor
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rlsys.data.batch import SUCCESS, RolloutBatch


@dataclass
class BatchMeta:
    """Per-sample scalars of a step's batch, in batch order (what the driver may hold)."""
    prompt_id: np.ndarray  # int64
    group_id: np.ndarray  # int64
    sample_index: np.ndarray  # int64
    policy_version: np.ndarray  # int64: the version that sampled the response
    reward: np.ndarray | None  # float32, from the verifier pool
    prompt_lengths: np.ndarray  # int64 tokens
    response_lengths: np.ndarray  # int64 tokens (episodes: observations included)
    truncated: np.ndarray  # bool: hit rollout.max_new_tokens (finish reason "length")
    loss_mask: np.ndarray | None = None  # bool: enters the policy loss (None = all do)
    anchor: np.ndarray | None = None  # bool: a DPH-RL anchor sample
    moves: np.ndarray | None = None  # bool: some advantage != 0 (None: advantages not computed yet)
    has_ref: bool = False  # reference log-probs are attached
    sampled_lengths: np.ndarray | None = None  # int64: response tokens the policy sampled (None: all of them)
    stats: dict = field(default_factory=dict)  # metrics computed where the data is (advantages, verifiers)

    def __len__(self) -> int:
        return len(self.prompt_id)

    @property
    def correct(self) -> np.ndarray:
        return self.reward >= SUCCESS

    @property
    def tokens(self) -> np.ndarray:
        """Prompt + response tokens per sample: the learners' work."""
        return self.prompt_lengths + self.response_lengths

    @property
    def policy_tokens(self) -> np.ndarray:
        """Response tokens the policy sampled per sample (what loss denominators and length metrics count)."""
        return self.response_lengths if self.sampled_lengths is None else self.sampled_lengths

    @staticmethod
    def of(batch: RolloutBatch, stats: dict | None = None) -> "BatchMeta":
        return BatchMeta(
            prompt_id=batch.prompt_id, group_id=batch.group_id, sample_index=batch.sample_index,
            policy_version=batch.policy_version, reward=batch.reward,
            prompt_lengths=np.array([len(p) for p in batch.prompt_token_ids], np.int64),
            response_lengths=batch.response_lengths,
            truncated=np.array([f == "length" for f in batch.finish_reason], bool),
            loss_mask=batch.loss_mask, anchor=batch.anchor,
            moves=None if batch.advantages is None else np.array([bool(np.any(a != 0)) for a in batch.advantages], bool),
            has_ref=batch.ref_logprobs is not None, stats=dict(stats or {}),
            sampled_lengths=None if batch.token_mask is None else batch.sampled_lengths)


class LocalBatch:
    """A RolloutBatch in this process behind the step-batch interface (a copy: attaching columns
    leaves the caller's batch as it was)."""

    def __init__(self, batch: RolloutBatch):
        self.batch = batch.select(np.arange(len(batch)))
        self.meta = BatchMeta.of(self.batch)

    def rows(self, parts: list[np.ndarray]) -> list:
        """Per part, its rows as something a Ray call takes for a RolloutBatch (here: the batch itself)."""
        return [self.batch.select(p) for p in parts]

    def attach(self, column: str, parts: list[np.ndarray], results: list) -> list:
        """Per-sample results of the ranks (object refs of one list per part, in part order) into
        `column`, in batch order; returns the column."""
        out = in_batch_order(len(self.batch), parts, results)
        setattr(self.batch, column, out)
        return out

    def alias(self, column: str, source: str) -> None:
        """column := source (bypass mode: logp_old is the engines' behaviour log-probs)."""
        setattr(self.batch, column, getattr(self.batch, source))


def in_batch_order(n: int, parts: list[np.ndarray], results: list) -> list:
    """The ranks' per-sample results (object refs of one list per part, in part order) as one list in
    batch order (part i holds the batch rows parts[i])."""
    import ray

    out: list = [None] * n
    for part, values in zip(parts, ray.get(results)):
        for i, v in zip(part, values):
            out[int(i)] = v
    return out


def as_step_batch(batch):
    """A RolloutBatch becomes a LocalBatch; a step batch held elsewhere is used as it is."""
    return LocalBatch(batch) if isinstance(batch, RolloutBatch) else batch
