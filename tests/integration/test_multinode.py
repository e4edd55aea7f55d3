"""Multi-node on one machine: a Ray head and two worker nodes (ray.cluster_utils.Cluster) with
different custom resources; cluster.rollout_resources puts the engine on one node and
cluster.learner_resources the learner ranks on the other, and 2 steps train to completion with
every weight sync crossing nodes (learner rank 0's buckets -> the engine, through the object store).
The run trains on a verl-format parquet written here (chat prompts, reward_model.ground_truth,
verl data_source names), so the verl path is exercised end to end in the same start-up."""

import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from hydra import compose, initialize_config_dir

from rlsys.config import register_configs, to_dataclass, validate
from rlsys.controller import prepare_data_and_model, run
from rlsys.metrics import read_metrics
from rlsys.roles import shutdown_roles, start_roles
from rlsys.train import CONF_DIR

pytestmark = pytest.mark.integration
MB = 1024 ** 2
register_configs()


@pytest.fixture(scope="module")
def nodes():
    from ray.cluster_utils import Cluster

    # three raylets on one shared machine: Ray's memory monitor would count the whole machine's
    # memory (other jobs included) against these nodes and kill our actors
    os.environ["RAY_memory_monitor_refresh_ms"] = "0"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 150 * MB})
    engines = cluster.add_node(num_cpus=1, resources={"rollout_node": 1}, object_store_memory=150 * MB)
    learners = cluster.add_node(num_cpus=1, resources={"learner_node": 2}, object_store_memory=150 * MB)
    cluster.wait_for_nodes()
    yield cluster, engines.node_id, learners.node_id
    ray.shutdown()
    cluster.shutdown()


def node_of(actor) -> str:
    return ray.get(actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()))


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


def test_roles_on_their_nodes_train_with_weight_sync_across_nodes(nodes, tmp_path):
    cluster, engine_node, learner_node = nodes
    base = compose_cfg(f"run_dir={tmp_path / 'base'}")
    *_, tiny_path, _ = prepare_data_and_model(base)  # the cached embedded tiny model
    train_path, eval_path = verl_files(tmp_path, base)
    cfg = compose_cfg(f"run_dir={tmp_path / 'run'}", f"cluster.address={cluster.address}", "trainer.steps=2",
                      "trainer.eval_n=0", "trainer.prompts_per_step=16", "rollout.n=4", "trainer.save_checkpoint=false",
                      f"model.path={chat_copy(tiny_path, tmp_path / 'tiny_chat')}",
                      f"task.train_path={train_path}", f"task.eval_path={eval_path}",
                      "cluster.rollout_resources={rollout_node: 1}", "cluster.learner_resources={learner_node: 1}")
    train, held_out, model_path, tok = prepare_data_and_model(cfg)
    roles = start_roles(cfg, model_path, tok.pad_token_id)
    try:
        assert [node_of(e) for e in roles.fleet.engines] == [engine_node]
        assert {node_of(w) for w in roles.learners.actors} == {learner_node}
        assert engine_node != learner_node
        run(cfg, roles, train, None)
    finally:
        shutdown_roles(roles)
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
