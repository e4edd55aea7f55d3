"""Bad input fails at start, before any actor starts, with a message naming what is wrong."""

import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT


def train(rlsys_cmd, tmp_path, *overrides):
    proc = subprocess.run([*rlsys_cmd, "train", f"trainer.output_dir={tmp_path}/runs", *overrides],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def parquet(tmp_path, name, rows, schema=None):
    path = tmp_path / name
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


@pytest.fixture
def good(tmp_path):
    return parquet(tmp_path, "good.parquet", [{"prompt": "1+1=", "ground_truth": "2", "data_source": "arithmetic"}])


def test_missing_column(rlsys_cmd, tmp_path, good):
    bad = parquet(tmp_path, "nogt.parquet", [{"prompt": "1+1=", "data_source": "arithmetic"}])
    rc, out = train(rlsys_cmd, tmp_path, f"task.train_path={bad}", f"task.eval_path={good}")
    assert rc == 2 and "nogt.parquet: missing required column(s) ['ground_truth']" in out


def test_empty_dataset(rlsys_cmd, tmp_path, good):
    schema = pa.schema([("prompt", pa.string()), ("ground_truth", pa.string()), ("data_source", pa.string())])
    empty = parquet(tmp_path, "empty.parquet", [], schema)
    rc, out = train(rlsys_cmd, tmp_path, f"task.train_path={empty}", f"task.eval_path={good}")
    assert rc == 2 and "empty.parquet: dataset is empty" in out


def test_model_path_does_not_exist(rlsys_cmd, tmp_path):
    rc, out = train(rlsys_cmd, tmp_path, "model.path=/nonexistent/model")
    assert rc == 2 and "'model.path': /nonexistent/model does not exist" in out


def test_more_learner_ranks_than_the_cluster(rlsys_cmd, tmp_path):
    rc, out = train(rlsys_cmd, tmp_path, "learner.world_size=16", "trainer.steps=1")
    assert rc == 2 and "needs 9 CPU but the Ray cluster has 2" in out and "learner.world_size=16" in out


def test_unknown_key_and_bad_value(rlsys_cmd, tmp_path):
    rc, out = train(rlsys_cmd, tmp_path, "trainer.stepz=3")
    assert rc != 0 and "Key 'stepz' not in 'TrainerConfig'" in out
    rc, out = train(rlsys_cmd, tmp_path, "rollout.n=-1")
    assert rc == 2 and "config key 'rollout.n': must be >= 1" in out
    rc, out = train(rlsys_cmd, tmp_path, "trainer.eval_n=0")  # a renamed key: stops before composing
    assert rc == 2 and "rlsys: error: trainer.eval_n was renamed to eval.before_after_samples" in out
