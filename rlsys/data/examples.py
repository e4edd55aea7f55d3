"""Small built-in example datasets, generated (never downloaded): math-style and code-style prompts.

`python -m rlsys.data.examples OUTDIR` writes math.parquet, code.parquet, code_chat(_eval).parquet (prompt,
ground_truth, data_source: usable as task.train_path / task.eval_path with a real model) and
verify_demo.jsonl: responses, right, wrong and hostile, to try `rlsys verify` on.
"""

from __future__ import annotations

import json
import random
import sys
from fractions import Fraction
from pathlib import Path

BOX = " Put the final answer in \\boxed{}."


def _latex(q: Fraction) -> str:
    return str(q.numerator) if q.denominator == 1 else f"\\frac{{{q.numerator}}}{{{q.denominator}}}"


def math_rows(n: int, seed: int = 0) -> list[dict]:
    """Fractions, linear equations, percentages and square roots with exact answers in LaTeX."""
    rng, rows = random.Random(seed), []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            a, b, c, d = (rng.randint(1, 9) for _ in range(4))
            q, text = Fraction(a, b) + Fraction(c, d), f"What is {a}/{b} + {c}/{d}?"
            truth = _latex(q)
        elif kind == 1:
            a, x, b = rng.randint(2, 9), Fraction(rng.randint(-20, 20), rng.choice([1, 1, 2, 3])), rng.randint(-9, 9)
            c = a * x + b
            text, truth = f"Solve for x: {a}x + {b} = {_latex(c) if c.denominator == 1 else c}.", _latex(x)
        elif kind == 2:
            p, m = rng.choice([5, 10, 12, 20, 25, 50, 75]), rng.randint(2, 40) * 4
            text, truth = f"What is {p}% of {m}?", _latex(Fraction(p * m, 100))
        else:
            k, m = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7])
            text, truth = f"Simplify the square root of {k * k * m}.", f"{k}\\sqrt{{{m}}}"
        rows.append({"prompt": text + BOX, "ground_truth": truth, "data_source": "math"})
    return rows


_CODE_TASKS = [
    ("Read two integers from one line of stdin and print their sum.",
     lambda r: (f"{r.randint(-99, 99)} {r.randint(-99, 99)}\n",), lambda a: str(sum(map(int, a.split())))),
    ("Read a line from stdin and print it reversed.",
     lambda r: ("".join(r.choice("abcxyz") for _ in range(r.randint(1, 8))) + "\n",), lambda a: a.strip()[::-1]),
    ("Read an integer n, then n integers on the next line; print the largest.",
     lambda r: (lambda xs: (f"{len(xs)}\n{' '.join(map(str, xs))}\n",))([r.randint(-50, 50) for _ in range(r.randint(1, 6))]),
     lambda a: str(max(map(int, a.split()[1:])))),
]


def code_rows(n: int, seed: int = 0) -> list[dict]:
    """stdin/stdout tasks (tests as JSON) and one function task (tests as Python asserts)."""
    rng, rows = random.Random(seed), []
    for i in range(n):
        if i % 4 == 3:
            k = rng.randint(2, 9)
            tests = "\n".join(f"assert scale({x}) == {k * x}" for x in (0, 1, rng.randint(2, 50)))
            rows.append({"prompt": f"Write a Python function scale(x) that returns x times {k}.",
                         "ground_truth": tests, "data_source": "code"})
            continue
        text, make_input, solve = _CODE_TASKS[i % 4 % len(_CODE_TASKS)]
        cases = [make_input(rng)[0] for _ in range(3)]
        tests = {"tests": [{"input": c, "output": solve(c) + "\n"} for c in cases]}
        rows.append({"prompt": text + " Answer with a Python program in a ```python block.",
                     "ground_truth": json.dumps(tests), "data_source": "code"})
    return rows


SUM_TESTS = {"tests": [{"input": "1 2\n", "output": "3\n"}, {"input": "-5 9\n", "output": "4\n"}]}
ATTACKS = {  # each must end with reward 0 and a reason, within the timeout, with the pool serving
    "infinite loop": "while True:\n    pass",
    "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    "memory bomb": "x = []\nwhile True:\n    x.append(bytearray(10**8))",
    "gigabyte of output": "import sys\nfor _ in range(1024):\n    sys.stdout.write('x' * (1 << 20))",
    "write outside its dir": "open('/tmp/rlsys_sandbox_escape', 'w').write('x')\nprint(3)",
    "read parent environment": "import os, glob\nprint(os.environ.get('RLSYS_SECRET', '') or "
                               "''.join(open(p).read() for p in glob.glob('/proc/*/environ') if 'RLSYS' in p))",
    "close stdout and sleep": "import os, time\nos.close(1)\ntime.sleep(3600)",
}
SCALE_TESTS = "assert scale(2) == 6\nassert scale(0) == 0"
HACKS = {  # reward hacks against test-code rows: each must end with reward 0 and a reason
    "exit before the tests": "def scale(x):\n    return 0\nimport sys\nsys.exit(0)",
    "os._exit in a thread": "import os, threading\ndef scale(x):\n    return 0\n"
                            "threading.Thread(target=os._exit, args=(0,)).start()",
    "always-equal object": "class Any:\n    def __eq__(self, other):\n        return True\n"
                           "def scale(x):\n    return Any()",
}


def demo_rows() -> list[dict]:
    fence = "```python\n{}\n```"
    rows = [
        {"id": "math-frac", "data_source": "math", "response": "1/2 + 1/4 = \\boxed{\\frac{3}{4}}", "ground_truth": "0.75"},
        {"id": "math-answer-is", "data_source": "math", "response": "So the answer is $3\\sqrt{2}$.", "ground_truth": "\\sqrt{18}"},
        {"id": "math-wrong", "data_source": "math", "response": "\\boxed{-3}", "ground_truth": "3"},
        {"id": "math-hedge", "data_source": "math", "response": "\\boxed{2} or maybe \\boxed{3}", "ground_truth": "3"},
        {"id": "math-none", "data_source": "math", "response": "I am not sure.", "ground_truth": "7"},
        {"id": "code-ok", "data_source": "code", "response": fence.format("print(sum(map(int, input().split())))"),
         "tests": SUM_TESTS},
        {"id": "code-wrong", "data_source": "code", "response": fence.format("print(1)"), "tests": SUM_TESTS},
        {"id": "code-asserts", "data_source": "code", "response": fence.format("def scale(x):\n    return 3 * x"),
         "ground_truth": SCALE_TESTS},
        {"id": "arith", "data_source": "arithmetic", "response": "46", "ground_truth": "46"},
    ]
    rows += [{"id": f"attack: {k}", "data_source": "code", "response": fence.format(v), "tests": SUM_TESTS}
             for k, v in ATTACKS.items()]
    rows += [{"id": f"hack: {k}", "data_source": "code", "response": fence.format(v), "tests": SCALE_TESTS}
             for k, v in HACKS.items()]
    return rows


def write_examples(out_dir: str | Path, n: int = 64, seed: int = 0) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"math": out / "math.parquet", "code": out / "code.parquet", "code_chat": out / "code_chat.parquet",
             "code_chat_eval": out / "code_chat_eval.parquet", "demo": out / "verify_demo.jsonl"}
    pq.write_table(pa.Table.from_pylist(math_rows(n, seed)), paths["math"])
    pq.write_table(pa.Table.from_pylist(code_rows(n, seed)), paths["code"])
    for name, rows in (("code_chat", code_rows(n, seed)), ("code_chat_eval", code_rows(n // 2, seed + 1))):
        chat = [{**r, "prompt": [{"role": "user", "content": r["prompt"]}]} for r in rows]  # for chat models
        pq.write_table(pa.Table.from_pylist(chat), paths[name])
    paths["demo"].write_text("".join(json.dumps(r) + "\n" for r in demo_rows()))
    return paths


if __name__ == "__main__":
    for name, path in write_examples(sys.argv[1] if len(sys.argv) > 1 else "examples").items():
        print(f"{name}: {path}")
