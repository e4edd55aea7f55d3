"""The built-in tool task with the tool and without it: does the tiny model learn to call the calculator,
and how far above any tool-less run does it end?

    .venv/bin/python benchmarks/agent_tool.py [--steps 20] [--out benchmarks/results/agent_tool] [-- OVERRIDES]

Runs `rlsys train task=calc trainer.steps=N` twice in one go, default-sized otherwise (64 prompts x 8 samples,
128 held-out problems x 8 samples before and after): with the calculator (each sample an episode: <calc>a*b</calc>,
<out>value</out>, the answer; the tiny model's warm-up shows the tool on half the problems) and with
rollout.agent.enabled=false (the same rows as one turn; the warm-up shows only answers). The baseline for the
tool run is the tool-less run measured in the same invocation: its best accuracy at any point (held-out
before and after, and every training step). Figures per run: held-out pass@1 before and after, the best
training accuracy, tool calls per sample and the fraction of samples that called the tool (first and last
step), accuracy of samples with and without a tool call, the learner-vs-engine log-prob gap on sampled tokens
(training/rollout_logprob_diff_mean, max over steps), observation tokens per sample and seconds per step.
Per-turn mismatch: the tool run's final checkpoint in one engine (RolloutWorker, in this process) runs episodes
of the first 32 held-out rows x 8 samples; each is replayed through the HF model of the same checkpoint, and the
|engine - HF| log-prob of every sampled token is reported per turn (mean, max, tokens).
Writes OUT/results.json and OUT/table.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(name: str, out: Path, steps: int, overrides: list[str]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [str(ROOT / ".venv/bin/rlsys"), "train", "task=calc", f"trainer.steps={steps}", f"trainer.output_dir={out}",
           "cluster.address=local", *overrides]
    t0 = time.time()
    with open(out / "console.log", "w") as log:
        subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    run_dir = max((p for p in out.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    acc = [r["critic/score/accuracy"] for r in rows]
    get = lambda key, i: rows[i].get(key, 0.0)  # noqa: E731
    return {"name": name, "command": " ".join(cmd[1:]), "wall_s": time.time() - t0,
            "held_out_before": summary["held_out_before"]["accuracy"], "held_out_after": summary["held_out_after"]["accuracy"],
            "train_accuracy_first": acc[0], "train_accuracy_last": acc[-1], "train_accuracy_best": max(acc),
            "tool_calls_per_sample": [get("episode/tool_calls_mean", 0), get("episode/tool_calls_mean", -1)],
            "tool_use_frac": [get("episode/tool_use_frac", 0), get("episode/tool_use_frac", -1)],
            "accuracy_with_tool_last": rows[-1].get("episode/accuracy_with_tool"),
            "accuracy_without_tool_last": rows[-1].get("episode/accuracy_without_tool"),
            "observation_tokens_per_sample": get("episode/observation_tokens_mean", -1),
            "logprob_gap_max": max(r["training/rollout_logprob_diff_mean"] for r in rows),
            "s_per_step": sorted(r["timing_s/step"] for r in rows)[len(rows) // 2],
            "checkpoint": summary.get("checkpoint"), "eval_path": str(run_dir / "data/eval.parquet")}


def per_turn_gap(checkpoint: str, eval_path: str, rows: int = 32, n: int = 8) -> dict:
    """|engine - HF| log-prob of the sampled tokens of fresh episodes, per turn, on one checkpoint."""
    import asyncio

    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlsys.agents.modules import load_env_modules
    from rlsys.config import RLSysConfig
    from rlsys.data.dataset import load_prompts
    from rlsys.rollout.worker import RolloutWorker, engine_spec
    from rlsys.verify import known_sources

    cfg = RLSysConfig()
    cfg.rollout.max_new_tokens = 48
    load_env_modules([])
    tok = AutoTokenizer.from_pretrained(checkpoint)
    data = load_prompts(eval_path, tok, known_sources(), cfg.rollout.max_model_len - 48)
    w, loop = RolloutWorker(engine_spec(cfg, checkpoint)), asyncio.new_event_loop()
    try:
        async def groups():
            return await asyncio.gather(*[w.generate_group(data.prompt_token_ids[i], 1000 + i, n, 1.0, 1.0, 48,
                                                           data.episode(i)) for i in range(rows)])

        outs = loop.run_until_complete(groups())
    finally:
        loop.run_until_complete(w.shutdown())
    model, gaps = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval(), {}
    for i, out in enumerate(outs):
        prompt = data.prompt_token_ids[i].tolist()
        for ids, beh, mask, turns in zip(out.response_token_ids, out.behaviour_logprobs, out.token_mask, out.turn_index):
            seq = torch.tensor([prompt + ids.tolist()])
            with torch.no_grad():
                logp = torch.log_softmax(model(seq).logits[0, :-1].float(), -1)
            mine = logp[len(prompt) - 1:].gather(-1, seq[0, len(prompt):, None])[:, 0].numpy()
            for t in np.unique(turns[mask > 0]):
                sel = (mask > 0) & (turns == t)
                gaps.setdefault(int(t), []).append(np.abs(mine[sel] - beh[sel]))
    return {t: {"tokens": int(sum(len(g) for g in v)), "mean": float(np.concatenate(v).mean()),
                "max": float(np.concatenate(v).max())} for t, v in sorted(gaps.items())}


def table(tool: dict, bare: dict) -> str:
    best_bare = max(bare["held_out_before"], bare["held_out_after"], bare["train_accuracy_best"])
    lines = ["| | with the calculator | without (rollout.agent.enabled=false) |", "|---|---|---|"]
    for label, key in (("held-out pass@1 before RL", "held_out_before"), ("held-out pass@1 after RL", "held_out_after"),
                       ("training accuracy, best step", "train_accuracy_best"),
                       ("tool calls per sample, first -> last step", "tool_calls_per_sample"),
                       ("samples that called the tool, first -> last step", "tool_use_frac"),
                       ("accuracy with / without a tool call, last step", None),
                       ("observation tokens per sample, last step", "observation_tokens_per_sample"),
                       ("learner-engine log-prob gap on sampled tokens (max step)", "logprob_gap_max"),
                       ("s/step (median)", "s_per_step")):
        cells = []
        for r in (tool, bare):
            v = (r["accuracy_with_tool_last"], r["accuracy_without_tool_last"]) if key is None else r[key]
            cells.append(" / ".join("-" if x is None else f"{x:.3g}" for x in v) if isinstance(v, (list, tuple))
                         else f"{v:.3g}")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    for t, g in tool.get("per_turn_gap", {}).items():
        lines.append(f"| engine-HF log-prob gap, turn {t} ({g['tokens']} sampled tokens): mean / max | "
                     f"{g['mean']:.2g} / {g['max']:.2g} | |")
    lines.append(f"\nBest accuracy of the run without the tool, anywhere: {best_bare:.3f}; the tool run ends at "
                 f"{tool['held_out_after']:.3f} held-out ({tool['held_out_after'] - best_bare:+.3f}).")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/agent_tool"))
    ap.add_argument("--gap-only", action="store_true", help="reuse OUT/results.json's runs; only the per-turn gap")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    out = Path(args.out)
    if args.gap_only:
        done = json.loads((out / "results.json").read_text())
        tool, bare = done["tool"], done["no_tool"]
    else:
        tool = run("tool", out / "tool", args.steps, args.overrides)
        bare = run("no_tool", out / "no_tool", args.steps, ["rollout.agent.enabled=false", "trainer.save_checkpoint=false",
                                                            *args.overrides])
        (out / "results.json").write_text(json.dumps({"tool": tool, "no_tool": bare, "argv": sys.argv[1:]}, indent=2))
    tool["per_turn_gap"] = per_turn_gap(tool["checkpoint"], tool["eval_path"])
    (out / "results.json").write_text(json.dumps({"tool": tool, "no_tool": bare, "argv": sys.argv[1:]}, indent=2))
    text = table(tool, bare)
    (out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
