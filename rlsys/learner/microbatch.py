"""Micro-batches of one rank's shard: a fixed number of samples, or a token budget.

learner.max_tokens_per_micro_batch > 0 caps the tokens (prompt + response, the tokens a packed
row runs over) of every micro-batch; 0 keeps learner.micro_batch_size samples per micro-batch.
Every rank must run the same number of forward/backward passes (FSDP's collectives pair up), so
the group takes the largest count any rank needs, and each rank spreads its samples over that
many micro-batches, balanced by tokens. A sample longer than the budget gets a micro-batch of
its own (a sample is never split). Which micro-batch a sample lands in never changes the loss:
the aggregations sum per-sample terms over global denominators (learner/losses.py).
"""

from __future__ import annotations

import math

import numpy as np

from rlsys.data.batch import RolloutBatch


def sample_tokens(batch: RolloutBatch) -> np.ndarray:
    return np.array([len(p) + len(r) for p, r in zip(batch.prompt_token_ids, batch.response_token_ids)], np.int64)


def first_fit(lengths: np.ndarray, budget: int) -> list[list[int]]:
    """Bins of sample indices with at most `budget` tokens each (first fit, longest first)."""
    bins: list[list[int]] = []
    loads: list[int] = []
    for i in np.argsort(-lengths, kind="stable"):
        j = next((j for j, load in enumerate(loads) if load + lengths[i] <= budget), None)
        if j is None:
            bins.append([]), loads.append(0)
            j = len(bins) - 1
        bins[j].append(int(i))
        loads[j] += int(lengths[i])
    return bins


def balanced(lengths: np.ndarray, parts: int) -> list[list[int]]:
    """`parts` bins with near-equal token counts (each sample to the lightest bin, longest first)."""
    bins: list[list[int]] = [[] for _ in range(parts)]
    loads = np.zeros(parts, np.int64)
    for i in np.argsort(-lengths, kind="stable"):
        j = int(np.argmin(loads))
        bins[j].append(int(i))
        loads[j] += lengths[i]
    return bins


def micro_batch_count(lengths: np.ndarray, micro_batch_size: int, max_tokens: int) -> int:
    """Micro-batches one rank needs for samples of these lengths (at least 1)."""
    if len(lengths) == 0:
        return 1
    if max_tokens > 0:
        return max(1, len(first_fit(lengths, max_tokens)))
    return max(1, math.ceil(len(lengths) / micro_batch_size))


def plan(lengths: np.ndarray, num_micro: int, max_tokens: int) -> list[np.ndarray]:
    """Exactly num_micro lists of sample indices (some may be empty). Without a budget: consecutive
    runs of near-equal sample counts. With one: balanced by tokens within the budget (if balancing
    breaks it, first-fit bins plus empty ones)."""
    if max_tokens <= 0:
        return list(np.array_split(np.arange(len(lengths)), num_micro))
    bins = balanced(lengths, num_micro)
    if any(len(b) > 1 and lengths[b].sum() > max_tokens for b in bins):
        bins = first_fit(lengths, max_tokens)
        if len(bins) > num_micro:
            raise ValueError(f"{len(bins)} micro-batches of learner.max_tokens_per_micro_batch={max_tokens} tokens "
                             f"needed, only {num_micro} planned")
        bins += [[] for _ in range(num_micro - len(bins))]
    return [np.array(sorted(b), np.int64) for b in bins]


def micro_batches(shard: RolloutBatch, num_micro: int, max_tokens: int):
    """(micro-batch, loss scale, sample indices in the shard) triples, exactly num_micro of them.
    An empty slot repeats sample 0 with scale 0: it runs the collectives and counts nothing."""
    for idx in plan(sample_tokens(shard), num_micro, max_tokens):
        yield shard.select(idx if len(idx) else np.array([0])), 1.0 if len(idx) else 0.0, idx
