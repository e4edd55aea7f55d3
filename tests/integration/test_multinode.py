"""Multi-node on one machine: a Ray head and two worker nodes (ray.cluster_utils.Cluster) with
different custom resources, and training submitted to it as users do (`ray job submit`, through
deploy/ray/submit.sh): cluster.rollout.resources puts the engine on one node and
cluster.learner.resources the learner ranks on the other, and 2 steps train to completion with
every weight sync crossing nodes (learner rank 0's buckets -> the engine, through the object store).
The run trains on a verl-format parquet written here (chat prompts, reward_model.ground_truth,
verl data_source names), so the verl path is exercised end to end in the same start-up."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from hydra import compose, initialize_config_dir

from rlsys.config import register_configs, to_dataclass
from rlsys.config.validation import validate
from rlsys.loop.controller import prepare_data_and_model
from rlsys.loop.metrics import read_metrics
from rlsys.train import CONF_DIR
from tests.conftest import ROOT

MB = 1024 ** 2
register_configs()


@pytest.fixture(scope="module")
def nodes():
    from ray.cluster_utils import Cluster

    from tests.e2e.test_ray_job import free_port, wait_for_http

    # three raylets on one shared machine: Ray's memory monitor would count the whole machine's
    # memory (other jobs included) against these nodes and kill our actors
    os.environ["RAY_memory_monitor_refresh_ms"] = "0"
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # the job's `python` is ours
    dash = free_port()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": 150 * MB, "include_dashboard": True, "dashboard_host": "127.0.0.1",
        "dashboard_port": dash})
    engines = cluster.add_node(num_cpus=1, resources={"rollout_node": 1}, object_store_memory=150 * MB)
    learners = cluster.add_node(num_cpus=1, resources={"learner_node": 2}, object_store_memory=150 * MB)
    cluster.wait_for_nodes()
    wait_for_http(f"http://127.0.0.1:{dash}/api/version", timeout=180)
    ray.init(address=cluster.address)  # this process reads the actors' placement back
    yield cluster, f"http://127.0.0.1:{dash}", engines.node_id, learners.node_id
    ray.shutdown()
    cluster.shutdown()


def nodes_of(class_name: str) -> list[str]:
    """The nodes the run's actors of a class lived on (Ray keeps dead actors' records)."""
    from ray.util.state import list_actors

    return [a.node_id for a in list_actors(filters=[("class_name", "=", class_name)], detail=True)]


def compose_cfg(*overrides: str):
    with initialize_config_dir(CONF_DIR, version_base=None):
        return validate(to_dataclass(compose("config", overrides=list(overrides))))


def verl_files(tmp_path, base_cfg) -> tuple[str, str]:
    """verl-format train/eval files of the built-in arithmetic problems, as chat prompts; half
    labelled openai/gsm8k (last number or '#### n'), half lighteval/MATH (needs \\boxed{})."""
    rows = pq.read_table(f"{base_cfg.run_dir}/data/train.parquet").to_pylist()[:64]
    verl = [{"data_source": "openai/gsm8k" if i % 2 == 0 else "lighteval/MATH",
             "prompt": [{"role": "user", "content": r["prompt"]}], "ability": "math",
             "reward_model": {"ground_truth": r["ground_truth"], "style": "rule"},
             "extra_info": {"split": "train", "index": i}} for i, r in enumerate(rows)]
    pq.write_table(pa.Table.from_pylist(verl), tmp_path / "train.parquet")
    pq.write_table(pa.Table.from_pylist(verl[:8]), tmp_path / "eval.parquet")
    return str(tmp_path / "train.parquet"), str(tmp_path / "eval.parquet")


def chat_copy(model_path: str, dest) -> str:
    """The embedded tiny model with a chat template (its character tokenizer has none)."""
    shutil.copytree(model_path, dest)
    cfg_file = dest / "tokenizer_config.json"
    tok = json.loads(cfg_file.read_text())
    tok["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    cfg_file.write_text(json.dumps(tok))
    return str(dest)


def test_job_submitted_to_the_cluster_places_roles_on_their_nodes_and_syncs_across_them(nodes, tmp_path):
    cluster, dashboard, engine_node, learner_node = nodes
    base = compose_cfg(f"run_dir={tmp_path / 'base'}")
    *_, tiny_path, _ = prepare_data_and_model(base)  # the cached embedded tiny model
    train_path, eval_path = verl_files(tmp_path, base)
    overrides = [f"hydra.run.dir={tmp_path / 'run'}", "trainer.steps=2", "eval.before_after_samples=0",
                 "trainer.prompts_per_step=16", "rollout.n=4", "trainer.save_checkpoint=false",
                 f"model.path={chat_copy(tiny_path, tmp_path / 'tiny_chat')}", f"task.train_path={train_path}",
                 f"task.eval_path={eval_path}", "cluster.rollout.resources={rollout_node: 1}",
                 "cluster.learner.resources={learner_node: 1}"]
    # No working-dir upload (the nodes share this venv): three raylets on one machine share a session
    # dir, and each unpacking the same upload there raced the driver's imports of it.
    env = {**os.environ, "RAY_ADDRESS": dashboard, "RLSYS_RUNTIME_ENV": ""}
    proc = subprocess.run(["bash", "deploy/ray/submit.sh", *overrides], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "succeeded" in log, log[-6000:]
    assert nodes_of("RolloutWorker") == [engine_node]
    assert nodes_of("LearnerWorker") == [learner_node] * 2
    assert engine_node != learner_node
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["training/policy_version"] for r in rows] == [1, 2]
    assert all(r["perf/update_weights_gb"] > 0 for r in rows)
    # step 2 was sampled by the engine with the weights the learners pushed after step 1, across nodes:
    # behaviour (engine) and learner log-probs agree
    assert rows[1]["training/rollout_logprob_diff_mean"] < 1e-3
    assert np.isfinite(rows[1]["actor/pg_loss"])
    rollouts = pq.read_table(tmp_path / "run" / "rollouts" / "step_000002.parquet").to_pydict()
    reward = dict.fromkeys(rollouts["data_source"], 0.0)
    for source, r in zip(rollouts["data_source"], rollouts["reward"]):
        reward[source] += r
    assert set(reward) == {"openai/gsm8k", "lighteval/MATH"}  # verl's names, scored by our verifiers
    assert reward["openai/gsm8k"] > 0  # the tiny model answers the number: GSM8K's verifier accepts it
