"""Built-in chat task: grade-school word problems with integer answers, scored by the math verifier.

Each problem is a short story of 1..`max_ops` operations (gain, loss, groups of, sharing) on
quantities of up to `max_digits` digits, generated from a seed. Prompts are chat messages that
ask for the answer in \\boxed{}; data_source "math" sends responses to the math verifier.
"""

from __future__ import annotations

import random
from pathlib import Path

from rlsys.data.arithmetic import write_parquet
from rlsys.seeds import held_out_seed

DATA_SOURCE = "math"
INSTRUCTION = "Put the final answer in \\boxed{}."
NAMES = ["Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jonas", "Kira", "Liam",
         "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Yusuf"]
ITEMS = ["apples", "marbles", "stickers", "books", "cookies", "pencils", "coins", "shells", "cards", "stamps"]


def _number(rng: random.Random, max_digits: int, low: int = 1) -> int:
    return rng.randint(low, max(low, 10 ** rng.randint(1, max_digits) - 1))


def _step(rng: random.Random, name: str, item: str, total: int, max_digits: int) -> tuple[str, int]:
    """One operation on the running total: its sentence and the new total (always >= 0, exact)."""
    kind = rng.choice(["gain", "lose", "times", "share"] if total > 0 else ["gain"])
    if kind == "gain":
        k = _number(rng, max_digits)
        return rng.choice([f"Then {name} buys {k} more {item}.", f"A friend gives {name} {k} {item}."]), total + k
    if kind == "lose":
        k = rng.randint(1, total)
        return rng.choice([f"{name} gives away {k} {item}.", f"Then {name} loses {k} {item}."]), total - k
    if kind == "times":
        k = rng.randint(2, 5)
        return f"Then the number of {item} {name} has becomes {k} times as large.", total * k
    divisors = [d for d in range(2, 10) if total % d == 0]
    if not divisors:
        k = _number(rng, max_digits)
        return f"Then {name} finds {k} more {item}.", total + k
    d = rng.choice(divisors)
    return f"{name} shares the {item} equally among {d} boxes and keeps one box.", total // d


def make_problem(rng: random.Random, max_ops: int, max_digits: int) -> tuple[str, str]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    total = _number(rng, max_digits)
    sentences = [f"{name} has {total} {item}."]
    for _ in range(rng.randint(1, max_ops)):
        sentence, total = _step(rng, name, item, total, max_digits)
        sentences.append(sentence)
    sentences.append(f"How many {item} does {name} have now?")
    return " ".join(sentences), str(total)


def generate_rows(num: int, max_ops: int, max_digits: int, seed: int, exclude: set[str] | None = None) -> list[dict]:
    rng = random.Random(seed)
    rows, seen = [], set(exclude or ())
    while len(rows) < num:
        problem, answer = make_problem(rng, max_ops, max_digits)
        if problem in seen:
            continue
        seen.add(problem)
        rows.append({"prompt": [{"role": "user", "content": f"{problem} {INSTRUCTION}"}],
                     "ground_truth": answer, "data_source": DATA_SOURCE})
    return rows


def write_splits(out_dir: str | Path, num_train: int, num_eval: int, max_ops: int, max_digits: int,
                 seed: int) -> tuple[Path, Path]:
    """Held-out problems never appear in the training split."""
    eval_rows = generate_rows(num_eval, max_ops, max_digits, held_out_seed(seed))
    train_rows = generate_rows(num_train, max_ops, max_digits, seed,
                               exclude={r["prompt"][0]["content"].removesuffix(f" {INSTRUCTION}") for r in eval_rows})
    out_dir = Path(out_dir)
    return write_parquet(train_rows, out_dir / "train.parquet"), write_parquet(eval_rows, out_dir / "eval.parquet")
