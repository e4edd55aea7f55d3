"""Built-in tool task: multi-digit products, with a calculator the model can call.

"482*37=" asks for 17834. A model writes `<calc>482*37</calc>`; the calculator answers `<out>17834</out>`
as the next observation; the model's next turn gives the answer. The tiny model cannot multiply in its
head, so the tool is what makes the task solvable (benchmarks/agent_tool.py measures both). Rows have
data_source "calc" and env "calculator" (rollout.agent.enabled=false: one turn, no tool); the environment
gives no reward: the verifier "calc" (rlsys/verify/__init__.py) reads the last integer after the last tool output. task.name=calc writes plain
prompts (the tiny model); calc_chat writes chat messages that explain the tool (a chat model).
"""

from __future__ import annotations

import ast
import operator
import random
import re
import zlib
from pathlib import Path

from rlsys.agents.env import Environment, Step, register_env

DATA_SOURCE = "calc"
CALL = re.compile(r"<calc>(.*?)</calc>", re.S)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
        ast.Mod: operator.mod, ast.USub: operator.neg}
CHAT_INSTRUCTION = ("You have a calculator. To use it, write the expression between <calc> and </calc>, for example "
                    "<calc>12*34</calc>, and its result comes back as <out>408</out>. Then give the final answer "
                    "as a number.")


def calculate(expr: str) -> int:
    """Integer arithmetic only (+ - * // %, parentheses, unary minus); anything else raises ValueError."""
    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if max(abs(left), abs(right)) > 10**12:
                raise ValueError("operand too large")
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        raise ValueError(f"not integer arithmetic: {ast.dump(node)[:60]}")

    try:
        return ev(ast.parse(expr.strip(), mode="eval"))
    except (SyntaxError, ZeroDivisionError, RecursionError) as e:
        raise ValueError(str(e)) from None


@register_env("calculator")
class Calculator(Environment):
    """A turn that writes <calc>expr</calc> gets <out>value</out> back (<out>error</out> if expr is not
    integer arithmetic); a turn without one is the answer, and ends the episode."""

    stop = ("</calc>",)

    def step(self, state, action: str) -> Step:
        calls = CALL.findall(action)
        if not calls:
            return Step(done=True)
        try:
            value = str(calculate(calls[-1]))
        except ValueError:
            value = "error"
        return Step(observation=f"<out>{value}</out>", tool_calls=1)

    def demo(self, prompt: str, ground_truth: str) -> str | None:
        """The tool on half the problems (a fixed half), the bare answer on the others: the warmed-up model
        calls the tool about half the time, and RL has the choice to learn."""
        if zlib.crc32(prompt.encode()) % 2:
            return None
        expr = prompt.rstrip("=").strip()
        return f"<calc>{expr}</calc><out>{ground_truth}</out>{ground_truth}"


def rows(num: int, seed: int, chat: bool, exclude: set[str] = frozenset()) -> list[dict]:
    """a*b with a of 3 digits and b of 2: five-digit products, out of reach of a tiny model's head."""
    rng, out, seen = random.Random(seed), [], set(exclude)
    while len(out) < num:
        a, b = rng.randint(100, 999), rng.randint(10, 99)
        text = f"{a}*{b}="
        if text in seen:
            continue
        seen.add(text)
        prompt = [{"role": "user", "content": f"{CHAT_INSTRUCTION} What is {a}*{b}?"}] if chat else text
        out.append({"prompt": prompt, "ground_truth": str(a * b), "data_source": DATA_SOURCE, "env": "calculator"})
    return out


def write_splits(out_dir: str | Path, num_train: int, num_eval: int, seed: int, chat: bool) -> tuple[Path, Path]:
    from rlsys.data.arithmetic import write_parquet
    from rlsys.seeds import held_out_seed

    held = rows(num_eval, held_out_seed(seed), chat)
    train = rows(num_train, seed, chat, exclude={r["prompt"] for r in rows(num_eval, held_out_seed(seed), False)})
    out = Path(out_dir)
    return write_parquet(train, out / "train.parquet"), write_parquet(held, out / "eval.parquet")
