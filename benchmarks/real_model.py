"""rlsys on a real model, side by side with bare vLLM and TRL's GRPOTrainer, in one run.

    .venv/bin/python benchmarks/real_model.py [--steps 30] [--trl-steps 3] [--out DIR]
    # TRL runs in its own venv: bash benchmarks/setup_trl.sh (done by this script if missing)

Workload (the smollm2_135m preset): SmolLM2-135M-Instruct, built-in word problems as chat prompts,
P=8 prompts x G=4 samples, <= 96 new tokens, lr 2e-6, fp32 on CPU.
1. rlsys: `rlsys train model=smollm2_135m trainer.steps=N eval.before_after_samples=E`: step time by stage
   (mean over steps 2..N), held-out accuracy before and after (E samples per held-out prompt).
2. bare vLLM: offline `vllm.LLM` on exactly step 1's requests (same prompts, same per-prompt
   seeds, so the same tokens come out): generated tok/s against the fleet's on that step.
3. TRL GRPOTrainer (HF generate) on the same model, prompts (the run's train.parquet), batch,
   lengths and learning rate: median step time over its steps 2..K.
Prints a table and writes results.json into --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
P, G, NEW_TOKENS, LR = 8, 4, 96, 2e-6


def run_rlsys(out: Path, steps: int, eval_n: int) -> Path:
    cmd = [str(ROOT / ".venv/bin/rlsys"), "train", "model=smollm2_135m", f"trainer.steps={steps}",
           f"eval.before_after_samples={eval_n}", f"trainer.output_dir={out}", "trainer.save_checkpoint=false"]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def rlsys_figures(run_dir: Path) -> dict:
    from rlsys.loop.metrics import STAGE_METRICS, read_metrics

    rows = read_metrics(run_dir / "metrics.jsonl")
    later = rows[1:] or rows  # step 1 also pays start-up costs
    mean = lambda k: statistics.mean(r[k] for r in later)  # noqa: E731
    s = json.loads((run_dir / "summary.json").read_text())
    # results.json keeps its own keys (step_seconds is also the TRL side's)
    return {"step_seconds": mean("timing_s/step"), **{f"time_{k}": mean(m) for k, m in STAGE_METRICS.items()},
            "step1_generate_tokens_per_s": rows[0]["perf/gen_throughput"],
            "learner_peak_memory_gb": max(r["perf/max_memory_gb"] for r in rows),
            "engine_peak_memory_gb": max(r["perf/rollout_max_memory_gb"] for r in rows),
            "held_out_before": (s.get("held_out_before") or {}).get("accuracy"),
            "held_out_after": (s.get("held_out_after") or {}).get("accuracy"), "steps": len(rows)}


def bare_vllm_tokens_per_s(run_dir: Path, model_path: str) -> dict:
    """Step 1's requests through offline vLLM with the fleet's per-prompt seeds (rlsys/rollout/fleet.py)."""
    import os

    import pyarrow.parquet as pq

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # as the fleet's engines (rollout.kv_cache_gb)
    from vllm import LLM, SamplingParams

    from rlsys.seeds import group_seed, step_seed

    t = pq.read_table(run_dir / "rollouts" / "step_000001.parquet").to_pydict()
    prompts = {pid: ids for pid, ids in zip(t["prompt_id"], t["prompt_token_ids"])}
    request_seed = step_seed(0, 1)  # trainer.seed=0, step 1: as rl_step seeds the step
    llm = LLM(model=model_path, dtype="float32", enforce_eager=True, max_model_len=256, seed=0,
              enable_prefix_caching=True)
    params = [SamplingParams(n=G, temperature=1.0, max_tokens=NEW_TOKENS, seed=group_seed(request_seed, pid))
              for pid in prompts]
    llm.generate([{"prompt_token_ids": [1, 2, 3]}], SamplingParams(max_tokens=8))  # warm-up, not timed
    t0 = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": ids} for ids in prompts.values()], params)
    seconds = time.perf_counter() - t0
    tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
    return {"bare_vllm_tokens": tokens, "bare_vllm_tokens_per_s": tokens / seconds,
            "rlsys_step1_tokens": sum(len(r) for r in t["response_token_ids"])}


def run_trl(run_dir: Path, model_path: str, steps: int) -> dict:
    if not (ROOT / ".venv-trl/bin/python").exists():
        subprocess.run(["bash", str(ROOT / "benchmarks/setup_trl.sh")], check=True)
    cmd = [str(ROOT / ".venv-trl/bin/python"), str(ROOT / "benchmarks/trl_grpo.py"), model_path,
           str(run_dir / "data" / "train.parquet"), str(steps), str(P), str(G), str(NEW_TOKENS), str(LR)]
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--eval-n", type=int, default=4, help="samples per held-out prompt, before and after")
    p.add_argument("--trl-steps", type=int, default=3)
    p.add_argument("--out", default="/tmp/rlsys_real_model")
    p.add_argument("--rlsys-run", help="reuse this finished rlsys run directory instead of training again")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from omegaconf import OmegaConf

    from rlsys.models.gguf import cached_conversion

    preset = OmegaConf.load(ROOT / "conf/model/smollm2_135m.yaml").model
    model_path = str(cached_conversion(preset.gguf, "~/.cache/rlsys", preset.gguf_sha256))
    run_dir = Path(args.rlsys_run) if args.rlsys_run else run_rlsys(out / "rlsys", args.steps, args.eval_n)
    res = {"rlsys": rlsys_figures(run_dir)}
    res["vllm"] = bare_vllm_tokens_per_s(run_dir, model_path)
    res["trl"] = run_trl(run_dir, model_path, args.trl_steps)
    r, v, t = res["rlsys"], res["vllm"], res["trl"]
    res["ratios"] = {"step_time_rlsys_over_trl": r["step_seconds"] / t["step_seconds"],
                     "generate_rlsys_over_bare_vllm": r["step1_generate_tokens_per_s"] / v["bare_vllm_tokens_per_s"]}
    (out / "results.json").write_text(json.dumps(res, indent=2))
    print(f"\nrlsys, {r['steps']} steps: {r['step_seconds']:.1f} s/step = generate {r['time_generate']:.1f} + verify "
          f"{r['time_verify']:.1f} + reference {r['time_reference']:.1f} + train {r['time_train']:.1f} + sync "
          f"{r['time_sync']:.1f} (stages overlap)")
    print(f"TRL GRPOTrainer: {t['step_seconds']:.1f} s/step  ->  rlsys / TRL = "
          f"{res['ratios']['step_time_rlsys_over_trl']:.2f}")
    print(f"generation, step 1's requests: fleet {r['step1_generate_tokens_per_s']:.0f} tok/s, bare vLLM "
          f"{v['bare_vllm_tokens_per_s']:.0f} tok/s  ->  {res['ratios']['generate_rlsys_over_bare_vllm']:.2f}")
    if r["held_out_before"] is None:
        print("held-out accuracy: skipped (--eval-n 0)")
    else:
        print(f"held-out accuracy ({args.eval_n} samples per prompt): {r['held_out_before']} before -> "
              f"{r['held_out_after']} after {r['steps']} steps")
    print(f"peak memory: learner rank {r['learner_peak_memory_gb']:.2f} GB, engine {r['engine_peak_memory_gb']:.2f} GB")
    print(json.dumps(res))


if __name__ == "__main__":
    sys.exit(main())
