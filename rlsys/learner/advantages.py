"""Advantage estimators, computed on the controller over the whole batch (numpy, cheap).

Each returns one float32 array per sample, aligned with its response tokens. Adding one is one
function decorated with @register_advantage("<name>").
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from rlsys.data.batch import RolloutBatch

ADVANTAGES: dict[str, Callable] = {}
EPS = 1e-6


def register_advantage(name: str):
    def wrap(fn):
        ADVANTAGES[name] = fn
        return fn

    return wrap


def _broadcast(per_sample: np.ndarray, batch: RolloutBatch) -> list[np.ndarray]:
    return [np.full(len(r), a, dtype=np.float32) for a, r in zip(per_sample, batch.response_token_ids)]


def _groups(batch: RolloutBatch):
    for g in np.unique(batch.group_id):
        yield np.nonzero(batch.group_id == g)[0]


@register_advantage("grpo")
def grpo(batch: RolloutBatch, norm_std: bool = True, **_) -> list[np.ndarray]:
    """A_i = (r_i - mean(r)) / (std(r) + eps); norm_std=False is Dr. GRPO's r_i - mean(r)."""
    adv = np.zeros(len(batch), dtype=np.float32)
    for idx in _groups(batch):
        r = batch.reward[idx].astype(np.float64)
        centred = r - r.mean()
        if norm_std:
            std = r.std(ddof=1) if len(r) > 1 else 0.0  # unbiased, as torch.std
            centred = centred / (std + EPS)
        adv[idx] = centred
    return _broadcast(adv, batch)


@register_advantage("rloo")
def rloo(batch: RolloutBatch, **_) -> list[np.ndarray]:
    """A_i = r_i - mean_{j != i} r_j (zero for a group of one)."""
    adv = np.zeros(len(batch), dtype=np.float32)
    for idx in _groups(batch):
        r = batch.reward[idx].astype(np.float64)
        if len(r) > 1:
            adv[idx] = r - (r.sum() - r) / (len(r) - 1)
    return _broadcast(adv, batch)


def compute_advantages(batch: RolloutBatch, name: str, **knobs) -> list[np.ndarray]:
    return ADVANTAGES[name](batch, **knobs)
