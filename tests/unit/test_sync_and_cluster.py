import pytest
import torch

from rlsys.cluster import ClusterError, check_capacity, role_demands
from rlsys.config import RLSysConfig
from rlsys.sync.bucket import pack_bucket, unpack_bucket


def test_bucket_round_trip_is_bit_exact():
    named = [("a.weight", torch.randn(3, 5)), ("b.bias", torch.randn(7).bfloat16()), ("c", torch.arange(4))]
    out = unpack_bucket(pack_bucket(named))
    assert [n for n, _ in out] == ["a.weight", "b.bias", "c"]
    for (_, x), (_, y) in zip(named, out):
        assert x.dtype == y.dtype and torch.equal(x, y)


def test_default_roles_fit_two_cpus():
    check_capacity(role_demands(RLSysConfig()), {"CPU": 2.0})


def test_too_many_learner_ranks_names_the_knob():
    cfg = RLSysConfig()
    cfg.learner.world_size = 8
    with pytest.raises(ClusterError, match=r"needs 5 CPU but the Ray cluster has 2(.|\n)*learner.world_size=8"):
        check_capacity(role_demands(cfg), {"CPU": 2.0})


def test_gpu_demand_checked():
    cfg = RLSysConfig()
    cfg.cluster.learner_gpus = 1
    with pytest.raises(ClusterError, match="needs 2 GPU but the Ray cluster has 0"):
        check_capacity(role_demands(cfg), {"CPU": 16.0})


def test_custom_resources_pin_roles_and_are_checked_naming_the_knob():
    cfg = RLSysConfig()
    cfg.cluster.rollout_resources, cfg.cluster.learner_resources = {"rollout_node": 1.0}, {"learner_node": 0.5}
    demands = {d.role: d for d in role_demands(cfg)}
    assert demands["rollout"].bundles == [{"CPU": 0.5, "rollout_node": 1.0}]
    assert demands["learner"].bundles == [{"CPU": 0.5, "learner_node": 0.5}] * 2
    check_capacity(list(demands.values()), {"CPU": 2.0, "rollout_node": 1.0, "learner_node": 1.0})
    with pytest.raises(ClusterError, match=r"(?s)needs 1 learner_node but the Ray cluster has 0.*cluster.learner_resources"):
        check_capacity(list(demands.values()), {"CPU": 2.0, "rollout_node": 1.0})


def test_custom_resources_reach_actor_options_and_bad_names_fail():
    pytest.importorskip("ray")
    from rlsys.cluster import actor_options
    from rlsys.config import ConfigError, validate

    opts = actor_options({"rollout": (None, [{"CPU": 0.5, "rollout_node": 1.0}])}, "rollout", 0)
    assert opts["num_cpus"] == 0.5 and opts["resources"] == {"rollout_node": 1.0}
    cfg = RLSysConfig(run_dir="/tmp/x")
    for bad in ({"GPU": 1.0}, {"learner_node": "x"}, {"learner_node": 0}, ["learner_node"]):
        cfg.cluster.learner_resources = bad
        with pytest.raises(ConfigError, match="cluster.learner_resources"):
            validate(cfg)
