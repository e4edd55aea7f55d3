"""`rlsys train learner.lora.rank=8` on the tiny default, as a user runs it: the adapters learn (training
accuracy rises), every sync sends adapters only and is verified, the reference is the base (KL 0 at the
first step), a run resumed from its step-6 checkpoint equals the uninterrupted one bitwise, the
resumable checkpoint holds no base weights, and the final output is both a PEFT adapter and a merged HF
model that give the same log-probs."""

import json
import subprocess

import numpy as np
import pytest
import torch

from rlsys.loop.metrics import read_metrics
from tests.conftest import ROOT

ARGS = ["learner.lora.rank=8", "learner.lora.alpha=16", "algorithm.optim.lr=1e-3", "algorithm.kl.coef=0.01",
        "trainer.steps=12", "trainer.save_every=6", "trainer.keep_last=2", "eval.before_after_samples=0"]


def train(rlsys_cmd, run_dir, *extra):
    proc = subprocess.run([*rlsys_cmd, "train", *ARGS, f"hydra.run.dir={run_dir}", *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return run_dir


@pytest.fixture(scope="module")
def runs(rlsys_cmd, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    whole = train(rlsys_cmd, root / "whole")
    resumed = train(rlsys_cmd, root / "resumed", f"trainer.resume={whole}/checkpoints/step_000006",
                    "trainer.save_checkpoint=false")
    return whole, resumed


def test_adapters_learn_through_verified_adapter_syncs(runs):
    rows = read_metrics(runs[0] / "metrics.jsonl")
    acc = [r["critic/score/accuracy"] for r in rows]
    assert np.mean(acc[-3:]) > np.mean(acc[:3]) + 0.03  # measured: 0.765 -> 0.833 (steps 1-3 vs 10-12)
    assert rows[0]["actor/kl_loss"] == 0.0 and rows[-1]["actor/kl_loss"] > 0  # the reference: adapters off
    assert all(r["perf/update_weights_adapter"] == 1.0 for r in rows)
    full = (runs[0] / "checkpoint" / "model.safetensors").stat().st_size  # what a full sync sends
    assert all(r["perf/update_weights_gb"] * 1e9 < 0.15 * full for r in rows)  # rank 8 of width 128
    assert rows[0]["sync/probe_gap"] < 1e-4  # the first sync is always probed (rollout.check_weights=auto)
    probed = [r for r in rows if "sync/probe_gap" in r]
    assert all(r["sync/probe_gap"] < 1e-4 < r.get("sync/probe_shift", 1.0) for r in probed)
    assert all(r["training/rollout_logprob_diff_max"] < 1e-3 for r in rows)  # engine == learner every step


def test_resume_from_the_adapter_checkpoint_is_exact(runs):
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from compare_runs import COLUMNS, VARYING

    import pyarrow.parquet as pq

    whole, resumed = runs
    a = {r["step"]: r for r in read_metrics(whole / "metrics.jsonl")}
    b = read_metrics(resumed / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(7, 13))
    for r in b:
        diffs = [k for k in r if not any(v in k for v in VARYING) and r[k] != a[r["step"]].get(k)]
        assert not diffs, (r["step"], diffs)
        ta, tb = (pq.read_table(d / "rollouts" / f"step_{r['step']:06d}.parquet") for d in (whole, resumed))
        assert all(ta.column(c).to_pylist() == tb.column(c).to_pylist() for c in COLUMNS)
    state = whole / "checkpoints" / "step_000012"
    size = sum(p.stat().st_size for p in state.rglob("*") if p.is_file())
    full = (whole / "checkpoint" / "model.safetensors").stat().st_size
    assert size < 0.6 * full  # adapters and their two Adam moments; no base weights


def test_final_output_is_a_peft_adapter_and_a_merged_model(runs):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ckpt = runs[0] / "checkpoint"
    config = json.loads((ckpt / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16
    merged = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"], dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, ckpt / "adapter").eval()
    ids = torch.tensor([[5 + i % 60 for i in range(24)]])
    with torch.no_grad():
        lm, la = (torch.log_softmax(m(input_ids=ids).logits, -1) for m in (merged, adapted))
        plain = torch.log_softmax(AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"])(
            input_ids=ids).logits, -1)
    assert (lm - la).abs().max() < 1e-4
    assert (lm - plain).abs().max() > 1e-3  # the adapter moved the model
