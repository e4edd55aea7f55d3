"""verl-format prompt files, accepted as they are.

verl's datasets (and most RL datasets published for it) have the columns data_source, prompt
(chat messages), ability, reward_model = {ground_truth, style} and extra_info. Their ground truth
is nested in reward_model; their data_source names are dataset ids ("openai/gsm8k",
"lighteval/MATH", ...), which rlsys/verify/verl_sources.py maps to our verifiers. This module
turns such a table's rows into rlsys's (prompt, ground_truth, data_source) rows, naming the file,
row and column of anything it cannot read.
"""

from __future__ import annotations

import json

import pyarrow as pa


def is_verl(table: pa.Table) -> bool:
    """verl layout: the ground truth is nested in reward_model instead of a column of its own."""
    return "ground_truth" not in table.column_names and "reward_model" in table.column_names


def ground_truth_of(reward_model, where: str) -> str:
    """reward_model.ground_truth as text (a list of accepted answers keeps its first one)."""
    if isinstance(reward_model, str):  # some exports store the struct as a JSON string
        try:
            reward_model = json.loads(reward_model)
        except ValueError:
            pass
    if not isinstance(reward_model, dict):
        raise ValueError(f"{where}, column 'reward_model': expected a struct with a 'ground_truth' field, "
                         f"got {type(reward_model).__name__}")
    if "ground_truth" not in reward_model:
        raise ValueError(f"{where}, column 'reward_model': no 'ground_truth' field (has {sorted(reward_model)})")
    truth = reward_model["ground_truth"]
    if isinstance(truth, (list, tuple)):
        truth = truth[0] if truth else None
    return "" if truth is None else str(truth)


def verl_rows(table: pa.Table, path: str, error) -> list[dict]:
    """The table's rows with ground_truth taken from reward_model; `error(msg)` makes the exception."""
    rows = table.select([c for c in ("prompt", "data_source", "reward_model", "extra_info")
                         if c in table.column_names]).to_pylist()
    out = []
    for i, row in enumerate(rows):
        try:
            truth = ground_truth_of(row["reward_model"], f"{path} row {i}")
        except ValueError as e:
            raise error(str(e)) from None
        out.append({"prompt": row.get("prompt"), "data_source": row.get("data_source"), "ground_truth": truth,
                    "extra_info": row.get("extra_info")})
    return out
