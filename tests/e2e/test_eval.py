"""`rlsys eval` end to end on the tiny base model: pass@k table, JSON, per-problem parquet, PNG."""

import json
import subprocess

import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, run_cli

N = 16


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, rlsys_cmd):
    out = tmp_path_factory.mktemp("evals")
    return run_cli([*rlsys_cmd, "eval", f"eval.n={N}", "task.num_eval=32", f"trainer.output_dir={out}"], out,
                   timeout=900)


def test_eval_reports_a_monotone_pass_at_k_curve(evaluated):
    run_dir, stdout = evaluated
    report = json.loads((run_dir / "passk.json").read_text())
    (per_source,) = report["pass_at_k"].values()
    curve = [per_source["overall"][str(k)] for k in (1, 2, 4, 8, 16)]
    assert curve == sorted(curve) and 0 < curve[0] < 1 and curve[-1] <= 1
    assert per_source["arithmetic"] == per_source["overall"]  # one data_source in the built-in task
    assert "@16" in stdout and "overall" in stdout
    assert (run_dir / "passk.png").stat().st_size > 1000


def test_counts_parquet_reproduces_the_json(evaluated):
    from rlsys.eval.passk import pass_at_k_curve

    run_dir, _ = evaluated
    counts = pq.read_table(run_dir / "passk_counts.parquet").to_pydict()
    assert len(counts["n"]) == 32 and set(counts["n"]) == {N} and all(0 <= c <= N for c in counts["c"])
    report = json.loads((run_dir / "passk.json").read_text())
    (per_source,) = report["pass_at_k"].values()
    again = pass_at_k_curve(counts["n"], counts["c"], [1, 4, 16])
    assert again[4] == pytest.approx(per_source["overall"]["4"])


def test_missing_checkpoint_fails_naming_the_key(rlsys_cmd, tmp_path):
    proc = subprocess.run([*rlsys_cmd, "eval", "eval.checkpoints=[/no/such/ckpt]", f"trainer.output_dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "eval.checkpoints[0]" in proc.stderr
