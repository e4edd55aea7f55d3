"""Multi-node on one machine: a Ray head and two worker nodes (ray.cluster_utils.Cluster) with
different custom resources; cluster.rollout_resources puts the engine on one node and
cluster.learner_resources the learner ranks on the other, and 2 steps train to completion with
every weight sync crossing nodes (learner rank 0's buckets -> the engine, through the object store)."""

import numpy as np
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

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 150 * MB})
    engines = cluster.add_node(num_cpus=1, resources={"rollout_node": 1}, object_store_memory=150 * MB)
    learners = cluster.add_node(num_cpus=1, resources={"learner_node": 2}, object_store_memory=150 * MB)
    cluster.wait_for_nodes()
    yield cluster, engines.node_id, learners.node_id
    ray.shutdown()
    cluster.shutdown()


def node_of(actor) -> str:
    return ray.get(actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()))


def test_roles_on_their_nodes_train_with_weight_sync_across_nodes(nodes, tmp_path):
    cluster, engine_node, learner_node = nodes
    with initialize_config_dir(CONF_DIR, version_base=None):
        c = compose("config", overrides=[
            f"run_dir={tmp_path}", f"cluster.address={cluster.address}", "trainer.steps=2", "trainer.eval_n=0",
            "trainer.prompts_per_step=16", "rollout.n=4", "trainer.save_checkpoint=false",
            "cluster.rollout_resources={rollout_node: 1}", "cluster.learner_resources={learner_node: 1}"])
    cfg = validate(to_dataclass(c))
    train, held_out, model_path, tok = prepare_data_and_model(cfg)
    roles = start_roles(cfg, model_path, tok.pad_token_id)
    try:
        assert [node_of(e) for e in roles.fleet.engines] == [engine_node]
        assert {node_of(w) for w in roles.learners.actors} == {learner_node}
        assert engine_node != learner_node
        run(cfg, roles, train, None)
    finally:
        shutdown_roles(roles)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["training/policy_version"] for r in rows] == [1, 2]
    assert all(r["perf/update_weights_gb"] > 0 for r in rows)
    # step 2 was sampled by the engine with the weights the learners pushed after step 1, across nodes:
    # behaviour (engine) and learner log-probs agree
    assert rows[1]["training/rollout_logprob_diff_mean"] < 1e-3
    assert np.isfinite(rows[1]["actor/pg_loss"])
