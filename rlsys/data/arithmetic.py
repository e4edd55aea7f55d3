"""Built-in verifiable task: multi-digit arithmetic ("123+45=" -> "168").

Prompts are generated from a seed and written as parquet with the dataset contract's columns,
so the built-in task goes through exactly the loader a user's dataset does.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rlsys.seeds import held_out_seed

DATA_SOURCE = "arithmetic"


def make_problem(rng: random.Random, max_digits: int) -> tuple[str, str]:
    def operand() -> int:
        digits = rng.randint(1, max_digits)
        return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)

    a, b = operand(), operand()
    op = rng.choice("+-")
    if op == "-" and b > a:
        a, b = b, a  # keep answers non-negative: the task is arithmetic, not sign handling
    return f"{a}{op}{b}=", str(a + b if op == "+" else a - b)


def generate_rows(num: int, max_digits: int, seed: int, exclude: set[str] | None = None) -> list[dict]:
    rng = random.Random(seed)
    rows, seen = [], set(exclude or ())
    while len(rows) < num:
        prompt, answer = make_problem(rng, max_digits)
        if prompt in seen:
            continue
        seen.add(prompt)
        rows.append({"prompt": prompt, "ground_truth": answer, "data_source": DATA_SOURCE})
    return rows


def write_parquet(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_builtin_splits(out_dir: str | Path, num_train: int, num_eval: int, max_digits: int,
                        seed: int) -> tuple[Path, Path]:
    """Held-out prompts never appear in the training split."""
    eval_rows = generate_rows(num_eval, max_digits, held_out_seed(seed))
    train_rows = generate_rows(num_train, max_digits, seed, exclude={r["prompt"] for r in eval_rows})
    out_dir = Path(out_dir)
    return (write_parquet(train_rows, out_dir / "train.parquet"),
            write_parquet(eval_rows, out_dir / "eval.parquet"))
