"""Prompt datasets: parquet files checked at load time, so a bad row fails now, not in step 300."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from rlsys.agents.env import env_of_row
from rlsys.data.verl_format import is_verl, verl_rows
from rlsys.verify import check_ground_truth

REQUIRED_COLUMNS = ("prompt", "ground_truth", "data_source")


class DatasetError(ValueError):
    """A prompt file that cannot be trained on; the message names the file and row."""


@dataclass
class PromptDataset:
    path: str
    prompts: list[str]  # rendered prompt text (chat messages already templated)
    prompt_token_ids: list[np.ndarray]
    ground_truth: list[str]
    data_source: list[str]
    extra_info: list[dict | None] | None = None  # per row, when the file has an extra_info column (verl's)
    env: list[str | None] | None = None  # per row, the environment its episodes run in (None: one turn); None when no row has one
    messages: list[list | None] | None = None  # per row: its chat messages (None: a text prompt); episodes' observations then use the chat template

    def episode(self, i: int) -> dict | None:
        """What an engine needs to run row i's samples as episodes (rlsys/agents/), or None: one turn."""
        if self.env is None or self.env[i] is None:
            return None
        return {"env": self.env[i], "row": {"prompt": self.prompts[i], "ground_truth": self.ground_truth[i],
                                            "data_source": self.data_source[i],
                                            "messages": self.messages[i], "chat": self.messages[i] is not None,
                                            "extra_info": None if self.extra_info is None else self.extra_info[i]}}

    def __len__(self) -> int:
        return len(self.prompts)

    def batches(self, size: int, seed: int):
        """Endless iterator of index arrays; reshuffles every epoch with a derived seed."""
        rng = np.random.default_rng(seed)
        order: list[int] = []
        while True:
            while len(order) < size:
                order.extend(rng.permutation(len(self)).tolist())
            yield np.array(order[:size], dtype=np.int64)
            order = order[size:]


def render_prompt(prompt, tokenizer, where: str) -> str:
    """Plain text passes through; chat messages use the tokenizer's chat template if it has one."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                            for m in prompt):
        if not getattr(tokenizer, "chat_template", None):
            raise DatasetError(f"{where}: 'prompt' is chat messages, but the model's tokenizer "
                               f"({getattr(tokenizer, 'name_or_path', '?')}) has no chat template (config key "
                               f"'model.path'): use a chat model, or plain-text prompts")
        return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
    raise DatasetError(f"{where}: 'prompt' must be text or a list of chat messages with a text 'content', "
                       f"got {str(prompt)[:120]!r}")


def load_prompts(path: str | Path, tokenizer, known_sources, max_prompt_tokens: int,
                 episodes: bool = True) -> PromptDataset:
    """episodes: rows with an environment (an `env` column, or a data_source one is registered for) run
    as multi-turn episodes (rollout.agent.enabled); false: every row is one turn."""
    path = str(path)
    if not Path(path).exists():
        raise DatasetError(f"{path}: prompt file does not exist")
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for non-parquet input
        raise DatasetError(f"{path}: not a readable parquet file ({e})") from e
    verl = is_verl(table)  # ground truth nested in reward_model (rlsys/data/verl_format.py)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names and not (verl and c == "ground_truth")]
    if missing:
        raise DatasetError(f"{path}: missing required column(s) {missing}; has {table.column_names} "
                           "(or give verl's layout: reward_model = {ground_truth, style})")
    if table.num_rows == 0:
        raise DatasetError(f"{path}: dataset is empty (0 rows)")
    has_extra = "extra_info" in table.column_names
    optional = [c for c in ("extra_info", "env") if c in table.column_names]
    rows = verl_rows(table, path, DatasetError) if verl else table.select([*REQUIRED_COLUMNS, *optional]).to_pylist()
    truth_col = "reward_model.ground_truth" if verl else "ground_truth"
    prompts, ids, truths, sources, extras, envs = [], [], [], [], [], []
    for i, row in enumerate(rows):
        where = f"{path} row {i}"
        if row["ground_truth"] is None or str(row["ground_truth"]).strip() == "":
            raise DatasetError(f"{where}: empty '{truth_col}'")
        if row["data_source"] not in known_sources:
            raise DatasetError(f"{where}: unknown data_source {row['data_source']!r} (column 'data_source'); "
                               f"known: {sorted(known_sources)}")
        try:
            check_ground_truth(row["data_source"], str(row["ground_truth"]))
        except (ValueError, SyntaxError) as e:
            raise DatasetError(f"{where}: {truth_col} is not valid for data_source "
                               f"{row['data_source']!r}: {e}") from None
        if row["prompt"] is None:
            raise DatasetError(f"{where}: empty 'prompt'")
        text = render_prompt(row["prompt"], tokenizer, where)
        tok = tokenizer.encode(text, add_special_tokens=False)
        if not tok or len(tok) > max_prompt_tokens:
            raise DatasetError(f"{where}: prompt has {len(tok)} tokens; must be 1..{max_prompt_tokens} "
                               "(raise rollout.max_model_len or shorten the prompt)")
        try:
            envs.append(env_of_row(row.get("env"), row["data_source"], where) if episodes else None)
        except ValueError as e:
            raise DatasetError(str(e)) from None
        prompts.append(text)
        ids.append(np.asarray(tok, dtype=np.int64))
        truths.append(str(row["ground_truth"]))
        sources.append(row["data_source"])
        extras.append(row.get("extra_info"))
    messages = [None if isinstance(r["prompt"], str) else list(r["prompt"]) for r in rows]
    return PromptDataset(path, prompts, ids, truths, sources, extras if has_extra else None,
                         envs if any(e is not None for e in envs) else None, messages)
