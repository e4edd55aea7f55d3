"""Sample completions as a table: the rows every backend logs every logger.samples_every steps."""

from __future__ import annotations

import numpy as np

COLUMNS = ["prompt", "response", "ground_truth", "reward", "data_source", "finish_reason"]


def sample_rows(batch, prompts: list[str], n: int) -> list[list]:
    """The first sample of each of the first n groups (prompt text from the dataset)."""
    firsts = [int(i) for i in np.nonzero(batch.sample_index == 0)[0]][:n] or list(range(min(n, len(batch))))
    reward = batch.reward if batch.reward is not None else np.zeros(len(batch))
    return [[prompts[int(batch.prompt_id[i])], batch.response_text[i], batch.ground_truth[i], float(reward[i]),
             batch.data_source[i], batch.finish_reason[i]] for i in firsts]


def markdown(columns: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", "<br>")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])
