"""The real model preset trains from the CLI: `rlsys train model=smollm2_135m` (SmolLM2-135M-Instruct,
49,152-token BPE, chat template) on the built-in word problems, with a small batch."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from rlsys.loop.metrics import read_metrics
from tests.conftest import run_cli

STEPS = 3  # the 2nd sync is the first the sender writes into the engine itself (rollout.cpu_gemm=plain)


@pytest.fixture(scope="module")
def run(rlsys_cmd, tmp_path_factory):
    out = tmp_path_factory.mktemp("real")
    return run_cli([*rlsys_cmd, "train", "model=smollm2_135m", f"trainer.steps={STEPS}", "trainer.prompts_per_step=4",
                    "rollout.n=2", "rollout.max_new_tokens=32", "eval.before_after_samples=0", "trainer.save_checkpoint=false",
                    "algorithm.entropy_coef=0.01",  # a gradient even when all 8 samples score 0 (a weak base)
                    "algorithm.kl.coef=0.01", "cluster.reference_with_learners=true",  # reference sharded in the learners
                    "rollout.cpu_gemm=plain",  # steps 2, 3 sample from plain linears written in place (tiny runs: packed)
                    "cluster.num_cpus=4", f"trainer.output_dir={out}"], out, timeout=1500)


def test_real_model_trains_with_engine_and_learner_in_agreement(run):
    run_dir, stdout = run
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["training/policy_version"] for r in rows] == list(range(1, STEPS + 1))
    for r in rows:
        # vLLM sampled with the learner's synced weights: same distribution on the real tokenizer
        assert r["training/rollout_logprob_diff_mean"] < 1e-3 and r["training/rollout_logprob_diff_max"] < 0.1
        assert r["actor/grad_norm"] > 0 and r["perf/max_memory_gb"] > 0.5  # 135M fp32 + Adam state
        assert r["timing_s/ref"] > 0 and np.isfinite(r["actor/kl_loss"])  # the learner ranks computed it
    assert rows[0]["actor/kl_loss"] < 1e-5  # step 1 trains version 0: the sharded reference is the same policy
    # rollout.cpu_gemm=plain: the first sync keeps the linears plain, the later ones the sender writes itself
    assert [r["perf/update_weights_by_sender"] for r in rows] == [0.0] + [1.0] * (STEPS - 1)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "ok"


def test_rollouts_are_chat_answers_scored_by_the_math_verifier(run):
    run_dir, _ = run
    t = pq.read_table(sorted((run_dir / "rollouts").glob("*.parquet"))[0]).to_pydict()
    assert len(t["response_text"]) == 4 * 2 and set(t["data_source"]) == {"math"}
    assert all(text.strip() for text in t["response_text"])  # words, not token soup or empty
    assert sum(len(r) for r in t["response_token_ids"]) > 4 * 2 * 5
    for details in t["verifier_details"]:
        d = json.loads(details) if isinstance(details, str) else details
        assert "reason" in d or "parsed" in d  # the math verifier said what it read
