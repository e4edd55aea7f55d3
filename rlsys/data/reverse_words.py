"""Built-in dense-reward chat task: reverse a short list of words (after prime-rl's reverse-text).

The reward is the word-level similarity of the response to the reversed list, in [0, 1]
(data_source "similarity", rlsys/verify/similarity.py): a response with the right words in
nearly the right order earns most of it, so every sample carries signal. Its held-out score is
the mean reward; a sample counts as solved only at similarity 1 (the exact list).
"""

from __future__ import annotations

import random
from pathlib import Path

from rlsys.data.arithmetic import write_parquet
from rlsys.seeds import held_out_seed

DATA_SOURCE = "similarity"
WORDS = ["apple", "river", "stone", "cloud", "green", "table", "music", "bread", "light", "horse", "paper",
         "water", "chair", "dream", "field", "glass", "house", "lemon", "money", "night", "ocean", "pilot",
         "queen", "radio", "sugar", "tiger", "watch", "zebra", "candle", "forest", "garden", "island",
         "jacket", "kitten", "mirror", "orange", "pencil", "rocket", "silver", "window", "yellow", "bridge",
         "coffee", "dragon", "engine", "flower", "guitar", "hammer", "planet", "winter"]


def make_problem(rng: random.Random, max_words: int) -> tuple[str, str]:
    words = rng.sample(WORDS, rng.randint(3, max(3, max_words)))
    listed = " ".join(words)
    return (f"Reverse the order of these words: {listed}. Reply with the reversed list only, the words "
            f"separated by spaces."), " ".join(reversed(words))


def generate_rows(num: int, max_words: int, seed: int, exclude: set[str] | None = None) -> list[dict]:
    rng = random.Random(seed)
    rows, seen = [], set(exclude or ())
    while len(rows) < num:
        problem, answer = make_problem(rng, max_words)
        if problem in seen:
            continue
        seen.add(problem)
        rows.append({"prompt": [{"role": "user", "content": problem}], "ground_truth": answer,
                     "data_source": DATA_SOURCE})
    return rows


def write_splits(out_dir: str | Path, num_train: int, num_eval: int, max_words: int, seed: int) -> tuple[Path, Path]:
    """Held-out lists never appear in the training split."""
    eval_rows = generate_rows(num_eval, max_words, held_out_seed(seed))
    train_rows = generate_rows(num_train, max_words, seed, exclude={r["prompt"][0]["content"] for r in eval_rows})
    out_dir = Path(out_dir)
    return write_parquet(train_rows, out_dir / "train.parquet"), write_parquet(eval_rows, out_dir / "eval.parquet")
