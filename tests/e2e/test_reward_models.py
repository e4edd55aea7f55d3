"""`rlsys train` whose reward comes from a scalar reward model, as a user runs it: the tiny default with every
arithmetic row scored by a SmolLM2-made reward model (tests/preference.py: it prefers answers ending in an
even number) instead of the arithmetic verifier. The policy moves where that model points (more even
answers, reward up), and each logged reward is the model's score of that sample, recomputed here."""

import json
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest

from rlsys.loop.metrics import read_metrics
from tests.conftest import ROOT
from tests.preference import cached_preference_head, real_model_path

STEPS = 12


@pytest.fixture(scope="module")
def run(rlsys_cmd, tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    head = cached_preference_head(real_model_path())
    run_dir = root / "run"
    args = [f"++verifier.models={{parity: {{kind: scalar, path: {head['path']}, batch_size: 64}}}}",
            "++verifier.combine={arithmetic: {terms: {parity: 1.0}}}", "cluster.reward_model.cpus=0",
            f"trainer.steps={STEPS}", "trainer.prompts_per_step=16", "rollout.n=8", "algorithm.optim.lr=3e-3",
            "eval.before_after_samples=0", "trainer.save_checkpoint=false", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run([*rlsys_cmd, "train", *args], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return run_dir, head


def _even(text: str) -> bool:
    digits = "".join(c for c in text.strip() if c.isdigit() or c == "-").lstrip("-")
    return bool(digits) and int(digits[-1]) % 2 == 0


def test_the_policy_follows_the_reward_model(run):
    run_dir, head = run
    rows = read_metrics(run_dir / "metrics.jsonl")
    reward = [r["critic/score/mean"] for r in rows]
    assert np.mean(reward[-3:]) > np.mean(reward[:3]) + 0.05, reward
    even = [np.mean([_even(t) for t in pq.read_table(run_dir / "rollouts" / f"step_{s:06d}.parquet")
                     .column("response_text").to_pylist()]) for s in (1, 2, STEPS - 1, STEPS)]
    assert np.mean(even[2:]) > np.mean(even[:2]) + 0.05, even
    assert rows[-1]["verify/parity_samples"] == 16 * 8


def test_each_logged_reward_is_the_models_score_of_that_sample(run):
    from rlsys.verify.reward_workers import ScalarRewardWorker

    run_dir, head = run
    log = pq.read_table(run_dir / "rollouts" / f"step_{STEPS:06d}.parquet").to_pylist()[:16]
    prompts = pq.read_table(next((run_dir / "data").glob("*train*.parquet"))).column("prompt").to_pylist()
    rm = ScalarRewardWorker(str(head["path"]), "float32", 2048, cpus=1, threads="placement")
    raw = rm.score([[{"role": "user", "content": prompts[r["prompt_id"]]}] for r in log],
                   [r["response_text"] for r in log])["raw"]
    for r, x in zip(log, raw):
        d = json.loads(r["verifier_details"])["terms"]["parity"]
        assert d["model"] == "parity" and d["raw"] == pytest.approx(x, abs=1e-4)
        assert r["reward"] == pytest.approx(x, abs=1e-4)  # normalize: raw (the default)
