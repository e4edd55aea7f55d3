"""The one columnar batch type that flows between stages (DESIGN.md, "Data contract").

Scalar columns are numpy arrays; ragged per-token columns are lists of numpy arrays aligned
with response_token_ids. A batch converts to a pyarrow Table for the rollout log.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from rlsys.verify.details import VerifierDetails

SUCCESS = 1.0 - 1e-6  # a reward at least this counts as solved (accuracy, pass@k, PSR/NSR's split)


@dataclass
class RolloutBatch:
    prompt_id: np.ndarray  # int64: row of the prompt dataset
    group_id: np.ndarray  # int64: one group per prompt per step
    sample_index: np.ndarray  # int64: index inside the group
    prompt_token_ids: list[np.ndarray]
    response_token_ids: list[np.ndarray]
    behaviour_logprobs: list[np.ndarray]  # float32 per response token, from the rollout engine
    policy_version: np.ndarray  # int64: weights version that sampled this response
    finish_reason: list[str]  # "stop" (eos) | "length"
    response_text: list[str]
    ground_truth: list[str]
    data_source: list[str]
    reward: np.ndarray | None = None  # float32 per sample, from the verifier pool
    verifier_details: list[VerifierDetails] | None = None  # per sample, from the verifier pool
    ref_logprobs: list[np.ndarray] | None = None  # float32 per response token, reference policy
    advantages: list[np.ndarray] | None = None  # float32 per response token
    loss_mask: np.ndarray | None = None  # bool per sample: enters the policy loss (None = all do)
    teacher_logprobs: list[np.ndarray] | None = None  # float32 per response token, distillation teacher
    values: list[np.ndarray] | None = None  # float32 per response token, critic V(state before token)
    returns: list[np.ndarray] | None = None  # float32 per response token, critic targets (gae)
    anchor: np.ndarray | None = None  # bool per sample: an initial-policy sample for DPH-RL, not RL
    old_logprobs: list[np.ndarray] | None = None  # float32 per response token: logp_old, the learner's before the step's updates
    extra_info: list[dict | None] | None = None  # the prompt row's extra_info (verl datasets), for verifiers that take it
    token_versions: list[np.ndarray] | None = None  # int64 per response token: the version that sampled it (in-flight updates, episodes)
    token_mask: list[np.ndarray] | None = None  # episodes: int8 per response token, 1 = sampled by the policy, 0 = observation or template (None = all 1)
    turn_index: list[np.ndarray] | None = None  # episodes: int16 per response token, the model turn it belongs to (observations: the turn they answer)
    episode: list[dict] | None = None  # episodes: per sample its status, turns, tool calls, observation tokens, environment reward and info

    def __len__(self) -> int:
        return len(self.prompt_id)

    @property
    def correct(self) -> np.ndarray:
        """bool per sample: full marks. A reward in (0, 1) (format credit, partial similarity) is not a success."""
        return self.reward >= SUCCESS

    @property
    def response_lengths(self) -> np.ndarray:
        return np.array([len(r) for r in self.response_token_ids], dtype=np.int64)

    @property
    def sampled_lengths(self) -> np.ndarray:
        """Response tokens the policy sampled (mask 1): what losses, lengths and throughput count."""
        if self.token_mask is None:
            return self.response_lengths
        return np.array([int(np.count_nonzero(m)) for m in self.token_mask], dtype=np.int64)

    def select(self, idx) -> "RolloutBatch":
        idx = np.asarray(idx, dtype=np.int64)
        out = {}
        for f in fields(self):
            col = getattr(self, f.name)
            out[f.name] = None if col is None else _take(col, idx)
        return RolloutBatch(**out)

    @staticmethod
    def concat(batches: list["RolloutBatch"]) -> "RolloutBatch":
        out = {}
        for f in fields(RolloutBatch):
            cols = [getattr(b, f.name) for b in batches]
            if any(c is None for c in cols):
                out[f.name] = None
            else:
                out[f.name] = _cat(cols)
        return RolloutBatch(**out)

    def to_arrow(self) -> pa.Table:
        cols: dict[str, Any] = {}
        for f in fields(self):
            col = getattr(self, f.name)
            if col is None:
                continue
            if f.name == "verifier_details":
                cols[f.name] = [_json(d.to_dict()) for d in col]
            elif f.name in ("extra_info", "episode"):
                cols[f.name] = [_json(d) for d in col]
            elif f.name == "behaviour_logprobs" and self.token_mask is not None:  # none where the policy sampled nothing
                cols[f.name] = _list_array(col, valid=self.token_mask)
            elif isinstance(col, np.ndarray):
                cols[f.name] = col
            elif col and all(isinstance(c, np.ndarray) for c in col):
                cols[f.name] = _list_array(col)
            else:
                cols[f.name] = col
        return pa.table(cols)


def _list_array(rows: list[np.ndarray], valid: list[np.ndarray] | None = None) -> pa.ListArray:
    """Ragged per-token rows as one Arrow list column, built from the concatenated values and offsets
    (no Python object per token: 8k samples x 4k tokens is seconds, not minutes); dtypes are kept.
    valid: per-token flags, null where 0."""
    offsets = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    values = pa.array(np.concatenate(rows), mask=None if valid is None else np.concatenate(valid) == 0)
    if offsets[-1] < 2**31:  # Arrow's list offsets are int32; past that, a large list
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)
    return pa.LargeListArray.from_arrays(pa.array(offsets), values)


def _take(col, idx: np.ndarray):
    if isinstance(col, np.ndarray):
        return col[idx]
    return [col[i] for i in idx]


def _cat(cols):
    if isinstance(cols[0], np.ndarray):
        return np.concatenate(cols)
    return [x for c in cols for x in c]


def _json(d: dict) -> str:
    import json

    return json.dumps(d, default=str, sort_keys=True)


def split_balanced(batch: RolloutBatch, parts: int) -> list[np.ndarray]:
    """Indices for `parts` shards with near-equal token counts (prompt + response)."""
    return balanced_parts(np.array([len(p) + len(r) for p, r in zip(batch.prompt_token_ids, batch.response_token_ids)]),
                          parts)


def balanced_parts(lengths: np.ndarray, parts: int) -> list[np.ndarray]:
    """Indices for `parts` shards with near-equal sums of `lengths` (greedy, longest first)."""
    loads = np.zeros(parts)
    shards: list[list[int]] = [[] for _ in range(parts)]
    for i in np.argsort(-np.asarray(lengths), kind="stable"):
        j = int(np.argmin(loads))
        shards[j].append(int(i))
        loads[j] += lengths[i]
    return [np.array(sorted(s), dtype=np.int64) for s in shards]
