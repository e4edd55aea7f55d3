import pytest
import torch

from rlsys.runtime.cluster import ClusterError, check_capacity, role_demands
from rlsys.config import RLSysConfig
from rlsys.sync.bucket import (Bucket, iter_buckets, layout, pack_bucket, pack_into, plan_buckets, sync_params,
                               unpack_bucket)
from rlsys.sync.object_store import sync_dtype
from rlsys.sync.shm import ShmRing, open_shared


def test_bucket_round_trip_is_bit_exact():
    named = [("a.weight", torch.randn(3, 5)), ("b.bias", torch.randn(7).bfloat16()), ("c", torch.arange(4))]
    out = unpack_bucket(pack_bucket(named))
    assert [n for n, _ in out] == ["a.weight", "b.bias", "c"]
    for (_, x), (_, y) in zip(named, out):
        assert x.dtype == y.dtype and torch.equal(x, y)


def test_shared_memory_slot_round_trip_casts_once_and_reads_in_place():
    named = [("l.q.bias", torch.randn(4)), ("l.q.weight", torch.randn(4, 8)), ("l.k.weight", torch.randn(2, 8)),
             ("steps", torch.arange(3))]
    ring = ShmRing(slots=2)
    wire, order = layout(named, torch.bfloat16)
    path, buf = ring.slot(1, wire.nbytes)
    pack_into(named, buf, wire, order)
    wire.path = path
    assert wire.names == ["l.q.weight", "l.k.weight", "l.q.bias", "steps"]  # matrices back to back first
    out = dict(unpack_bucket(Bucket(**wire.wire())))  # what an engine worker rebuilds from vLLM's RPC
    for name, t in named:  # floats travel as bf16, integers as they are
        want = t.bfloat16() if t.is_floating_point() else t
        assert out[name].dtype == want.dtype and torch.equal(out[name], want)
    q, k = out["l.q.weight"], out["l.k.weight"]
    assert q.data_ptr() + q.numel() * 2 == k.data_ptr()  # fused shards can be read as one weight
    assert open_shared(path).data_ptr() == out["l.q.weight"].data_ptr()  # the engine's view is the mapping
    ring.close()
    assert not __import__("os").path.exists(path)


def test_frozen_parameters_stay_home_and_buckets_keep_layers_whole():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    model[0].weight.requires_grad_(False)
    assert [n for n, _ in sync_params(model, skip_frozen=True)] == ["1.weight", "1.bias", "2.weight", "2.bias"]
    assert len(sync_params(model, skip_frozen=False)) == 5
    sent = [n for b in iter_buckets(model, bucket_mb=1, skip_frozen=True) for n, _ in b]
    assert sent == ["1.weight", "1.bias", "2.weight", "2.bias"]
    assert plan_buckets([10, 10, 10], 5, ["a", "a", "b"]) == [[0, 1], [2]]  # a layer's tensors share a bucket


def test_sync_dtype_follows_the_engine_unless_set():
    cfg = RLSysConfig()
    assert sync_dtype(cfg) == torch.float32
    cfg.model.dtype = "bfloat16"
    assert sync_dtype(cfg) == torch.bfloat16
    cfg.rollout.sync_dtype = "float32"
    assert sync_dtype(cfg) == torch.float32


def test_default_roles_fit_two_cpus():
    check_capacity(role_demands(RLSysConfig()), {"CPU": 2.0})


def test_too_many_learner_ranks_names_the_knob():
    cfg = RLSysConfig()
    cfg.learner.world_size = 8
    with pytest.raises(ClusterError, match=r"needs 5 CPU but the Ray cluster has 2(.|\n)*learner.world_size=8"):
        check_capacity(role_demands(cfg), {"CPU": 2.0})


def test_gpu_demand_checked():
    cfg = RLSysConfig()
    cfg.cluster.learner.gpus = 1
    with pytest.raises(ClusterError, match="needs 2 GPU but the Ray cluster has 0"):
        check_capacity(role_demands(cfg), {"CPU": 16.0})


def test_custom_resources_pin_roles_and_are_checked_naming_the_knob():
    cfg = RLSysConfig()
    cfg.cluster.rollout.resources, cfg.cluster.learner.resources = {"rollout_node": 1.0}, {"learner_node": 0.5}
    demands = {d.role: d for d in role_demands(cfg)}
    assert demands["rollout"].bundles == [{"CPU": 0.5, "rollout_node": 1.0}]
    assert demands["learner"].bundles == [{"CPU": 0.5, "learner_node": 0.5}] * 2
    check_capacity(list(demands.values()), {"CPU": 2.0, "rollout_node": 1.0, "learner_node": 1.0})
    with pytest.raises(ClusterError, match=r"(?s)needs 1 learner_node but the Ray cluster has 0.*cluster\.learner\.resources"):
        check_capacity(list(demands.values()), {"CPU": 2.0, "rollout_node": 1.0})


def test_custom_resources_reach_actor_options_and_bad_names_fail():
    pytest.importorskip("ray")
    from rlsys.runtime.cluster import actor_options
    from rlsys.config import ConfigError
    from rlsys.config.validation import validate

    opts = actor_options({"rollout": (None, [{"CPU": 0.5, "rollout_node": 1.0}])}, "rollout", 0)
    assert opts["num_cpus"] == 0.5 and opts["resources"] == {"rollout_node": 1.0}
    cfg = RLSysConfig(run_dir="/tmp/x")
    for bad in ({"GPU": 1.0}, {"learner_node": "x"}, {"learner_node": 0}, ["learner_node"]):
        cfg.cluster.learner.resources = bad
        with pytest.raises(ConfigError, match=r"cluster\.learner\.resources"):
            validate(cfg)


SMALL_TMPFS_SCRIPT = """
import sys
from rlsys.sync.shm import ShmRing
small, fallback = sys.argv[1], sys.argv[2]
ring = ShmRing(3, roots=(small, fallback))
for i in range(3):  # 3 x 12 MB slots into a 16 MB tmpfs: the 2nd no longer fits
    path, buf = ring.slot(i, 12 << 20)
    buf.fill_(i + 1)  # every page written: a slot that only looked reserved would raise SIGBUS here
    print(path)
try:
    ShmRing(1, roots=(small,)).slot(0, 12 << 20)
except RuntimeError as err:
    print("ERROR", err)
"""


def test_a_full_dev_shm_falls_back_to_the_temp_dir_instead_of_killing_the_sender(tmp_path):
    """A Docker-sized /dev/shm (a small tmpfs, mounted in a private mount namespace) cannot hold
    the ring: its slots go to the fallback dir, and a ring with nowhere to go names the sizes."""
    import shutil
    import subprocess
    import sys

    small, fallback = tmp_path / "small", tmp_path / "fallback"
    small.mkdir(), fallback.mkdir()
    if not shutil.which("unshare") or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("needs a private mount namespace (unshare -m) to mount a small tmpfs")
    script = tmp_path / "ring.py"
    script.write_text(SMALL_TMPFS_SCRIPT)
    cmd = f"mount -t tmpfs -o size=16m tmpfs {small} && {sys.executable} {script} {small} {fallback}"
    proc = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]  # -7 (SIGBUS) before slots were reserved
    paths = [line for line in proc.stdout.splitlines() if not line.startswith("ERROR")]
    assert [p.startswith(str(small)) for p in paths] == [True, False, False]
    assert all(p.startswith(str(fallback)) for p in paths[1:])
    assert "no room for a 12 MB bucket slot" in proc.stdout and "MB free" in proc.stdout
    assert "using" in proc.stderr and str(fallback) in proc.stderr  # the fall back is told


def test_sync_weights_hands_the_snapshot_to_the_fleet_and_restarts_the_engines_lost_in_the_push():
    from types import SimpleNamespace

    from contextlib import nullcontext

    from rlsys.loop.pipeline import sync_weights
    from rlsys.sync.result import SyncResult

    served, lost = [], []
    fleet = SimpleNamespace(sync_targets=lambda: ["e0", "e1", "e2"], serve=lambda v, snap: served.append((v, snap)),
                            lost_in_push=lost.extend, kill_stuck=lambda: 0, paused=lambda engines: nullcontext())
    pushed = SyncResult(bytes=10, seconds=1.0, failed=[1], snapshot=["bucket0", "bucket1"])
    roles = SimpleNamespace(fleet=fleet, learners=SimpleNamespace(push_weights=lambda engines, v, **_: pushed))
    stats = sync_weights(roles, 3)
    [(version, snapshot)] = served
    assert version == 3 and snapshot.args == (["bucket0", "bucket1"],)  # restarted engines get version 3's buckets
    assert lost == ["e1"] and stats.snapshot is None and stats.bytes == 10
    roles.learners.push_weights = lambda engines, v, **_: SyncResult(bytes=0, seconds=0.0)  # sync mode: nothing kept
    sync_weights(roles, 4)
    assert served[-1] == (4, None) and lost == ["e1"]


def test_sync_result_says_when_the_sender_wrote_the_weights_itself():
    from rlsys.sync.result import SyncResult

    assert SyncResult(1, 1.0, engine_paths={"written_by_sender": 4}).by_sender
    assert not SyncResult(1, 1.0, engine_paths={"in_place": 4}).by_sender and not SyncResult(0, 0.0).by_sender


def test_an_engines_load_is_its_slowest_tp_workers_and_keeps_the_path_counts():
    from rlsys.rollout.worker import _merge
    from rlsys.sync.result import EngineLoad

    tp = [{"tensors": 3, "load_s": 1.0, "repack_s": 0.5, "start": 3.0, "end": 5.0, "paths": {"in_place": 3}},
          {"tensors": 3, "load_s": 2.0, "repack_s": 0.1, "start": 2.0, "end": 4.0, "paths": {"in_place": 3}}]
    assert _merge(tp) == EngineLoad(tensors=3, load_s=2.0, repack_s=0.5, start=2.0, end=5.0, paths={"in_place": 3})
    held = _merge([{"tensors": 0, "load_s": 0.0, "repack_s": 0.0, "start": 1.0, "end": 1.0, "written": False}])
    assert held.written is False and held.paths is None and _merge([]) == EngineLoad()
