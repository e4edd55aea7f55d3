"""What the controller samples each step: the RL batch (with DAPO's dynamic sampling) and the
DPH-RL anchor samples drawn once from the initial policy."""

from __future__ import annotations

from dataclasses import fields
from typing import Iterator

import numpy as np

from rlsys.data.batch import RolloutBatch
from rlsys.data.dataset import PromptDataset


class SamplingError(RuntimeError):
    """Dynamic sampling could not fill the batch; the message says how far it got and what to change."""


def informative(batch: RolloutBatch) -> np.ndarray:
    """Per sample: its group has 0 < #correct < G (a group where all agree has zero advantage)."""
    ok = np.zeros(len(batch), bool)
    correct = batch.reward > 0
    for g in np.unique(batch.group_id):
        idx = batch.group_id == g
        ok[idx] = 0 < correct[idx].sum() < idx.sum()
    return ok


def sample_step(cfg, roles, data: PromptDataset, prompts: Iterator[np.ndarray], seed: int, timer):
    """Generate and verify one step's groups. With algorithm.dynamic_sampling, keep only the
    informative groups and draw more prompts until trainer.prompts_per_step groups are kept."""
    a, need = cfg.algorithm, cfg.trainer.prompts_per_step
    kept: list[RolloutBatch] = []
    num_kept = tried = 0
    rounds = a.max_sampling_rounds if a.dynamic_sampling else 1
    for rnd in range(rounds):
        idx = next(prompts)
        with timer("generate"):
            batch = roles.fleet.generate(data, idx, seed=seed + 7919 * rnd)
        with timer("verify"):
            roles.verifiers.score(batch)
        batch.group_id = batch.group_id + tried  # unique across rounds
        tried += len(idx)
        if not a.dynamic_sampling:
            return batch, {}
        batch = batch.select(np.nonzero(informative(batch))[0])
        kept.append(batch)
        num_kept += len(np.unique(batch.group_id))
        if num_kept >= need:
            batch = RolloutBatch.concat(kept)
            first = np.unique(batch.group_id)[:need]
            batch = batch.select(np.nonzero(np.isin(batch.group_id, first))[0])
            return batch, {"sampling_rounds": rnd + 1, "prompts_sampled": tried, "informative_frac": num_kept / tried}
    raise SamplingError(
        f"dynamic sampling kept {num_kept} of trainer.prompts_per_step={need} groups after "
        f"algorithm.max_sampling_rounds={rounds} rounds ({tried} prompts x rollout.n={cfg.rollout.n}): only groups "
        f"with some but not all samples correct carry signal, and too few did. The task is too easy or too hard "
        f"for this policy: raise algorithm.max_sampling_rounds or rollout.n, change the data, or turn "
        f"algorithm.dynamic_sampling off.")


class AnchorPool:
    """DPH-RL: samples drawn once from the initial policy (engines at version 0), stored with
    their pi_0 log-probs (the behaviour log-probs), and cycled through a slice per step."""

    def __init__(self, cfg, roles, data: PromptDataset):
        a, n = cfg.algorithm, cfg.rollout.n
        num_prompts = min(len(data), -(-a.anchor_pool // n))
        idx = np.random.default_rng(cfg.trainer.seed + 17).permutation(len(data))[:num_prompts]
        batch = roles.verifiers.score(roles.fleet.generate(data, idx, seed=cfg.trainer.seed + 17))
        self.pool = batch.select(np.arange(min(a.anchor_pool, len(batch))))
        self.cursor = 0

    def next(self, k: int) -> RolloutBatch:
        idx = (self.cursor + np.arange(k)) % len(self.pool)
        self.cursor = int(idx[-1] + 1) % len(self.pool)
        return self.pool.select(idx)


def with_anchors(batch: RolloutBatch, anchors: RolloutBatch) -> RolloutBatch:
    """The RL batch plus anchor samples that enter only the divergence term: no policy loss
    (loss_mask off), zero advantages; per-token columns the RL batch has are filled for them."""
    anchors = anchors.select(np.arange(len(anchors)))
    zeros = [np.zeros(len(r), np.float32) for r in anchors.response_token_ids]
    for f in fields(RolloutBatch):
        mine, theirs = getattr(batch, f.name), getattr(anchors, f.name)
        if mine is None:
            setattr(anchors, f.name, None)
        elif theirs is None:
            setattr(anchors, f.name, [z.copy() for z in zeros])
    anchors.ref_logprobs = anchors.behaviour_logprobs  # only read for the KL metric, masked off for anchors
    anchors.loss_mask = np.zeros(len(anchors), bool)
    anchors.anchor = np.ones(len(anchors), bool)
    anchors.group_id = anchors.group_id + int(batch.group_id.max()) + 1
    batch = batch.select(np.arange(len(batch)))
    batch.loss_mask = np.ones(len(batch), bool) if batch.loss_mask is None else batch.loss_mask
    batch.anchor = np.zeros(len(batch), bool)
    return RolloutBatch.concat([batch, anchors])
