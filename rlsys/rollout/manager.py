"""The rollout manager: one Ray actor that owns generation and scoring, so samples never pass
through the controller.

It holds the fleet, the verifier pool and the reference/teacher servers' calls (the step pipeline of
rlsys/loop/pipeline.py runs here, unchanged: streaming, dynamic sampling, engine re-sends, verifier
re-scores), the prompt cursor, the DPH-RL anchor pool, and the queue of finished steps (rlsys/loop/
batches.py: bounded by trainer.max_staleness; 0 = each step sampled when the controller asks). Each
step's RolloutBatch stays in this process; the controller gets its metadata (rlsys/data/step_batch.py)
and moves the data by reference: the learner ranks fetch their rows from the object store and send
their per-sample results (values, log-probs) back here the same way. Advantages are computed here,
where the data is.

`Rollout` is the controller's side: calls on the actor by name, with the actor's errors re-raised as
their own type (SamplingError, FleetError, LearnerLost of a push ...).
"""

from __future__ import annotations

import os
import pickle
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rlsys.data.batch import RolloutBatch
from rlsys.data.step_batch import BatchMeta, in_batch_order
from rlsys.runtime import notices

ANCHORS_FILE = "anchors.pkl"


class RolloutManager:
    """The actor. parts: the roles' rollout side as handles (rlsys/loop/roles.Roles minus the learner
    group, whose rank handles it gets for weight pushes)."""

    def __init__(self, cfg, engines: list, make_engine, verifier_workers: list, reward_workers: dict, reference, teacher,
                 server_paths: dict, learner_actors: list, train_data, held_out):
        from rlsys.learner.group import LearnerGroup
        from rlsys.learner.role_config import learner_role_config
        from rlsys.loop.roles import Roles, deadlines_of
        from rlsys.rollout.fleet import RolloutFleet
        from rlsys.runtime.faults import FaultLog
        from rlsys.verify.model_pool import ModelPool
        from rlsys.verify.pool import VerifierPool

        faults, deadlines = FaultLog(), deadlines_of(cfg)
        fleet = RolloutFleet(engines, cfg.rollout, make_engine, faults, deadlines)
        models = {name: ModelPool(name, cfg.verifier.models[name], workers, faults, cfg.cluster.deadline_scale)
                  for name, workers in reward_workers.items()}  # verifier.models: their actors, restarted by Ray
        verifiers = VerifierPool(verifier_workers, faults, deadlines, cfg.verifier, models)
        # the ranks' handles, for pushes: the controller owns the group (its process group, its restarts)
        learners = LearnerGroup(learner_actors, learner_role_config(cfg), deadlines=deadlines, setup=False)
        self.roles = Roles(fleet, verifiers, reference, learners, teacher, faults, dict(server_paths), deadlines)
        self.batches: dict[int, RolloutBatch] = {}  # step -> its batch as trained, until the step is finished
        self.rl: dict[int, RolloutBatch] = {}  # step -> its RL samples (the batch without DPH-RL anchors)
        self.drawn: dict[int, int] = {}  # step -> prompt batches drawn once its round was sampled
        self.rollouts = self.anchors = self.prompts = None
        self.configure(cfg, train_data, held_out)

    def configure(self, cfg, train_data, held_out, server_paths: dict | None = None) -> None:
        """The run's config and data (roles reused by another run: rlsys/loop/roles.reset_roles)."""
        from rlsys.learner.role_config import learner_role_config

        self.end()
        self.cfg, self.train_data, self.held_out = cfg, train_data, held_out
        self.roles.fleet.rollout, self.roles.fleet.in_flight = cfg.rollout, cfg.trainer.in_flight_updates
        self.roles.learners.cfg = learner_role_config(cfg)
        self.roles.server_paths.update(server_paths or {})

    # ---- a run: begin, steps, end --------------------------------------------------------------------
    def begin(self, start: int, version: int, prompts_drawn: int, anchors_from: str | None) -> None:
        """The queue of steps start+1.. for a fleet serving `version` (a resumed run: its checkpoint's
        step, version, prompt batches drawn and anchor pool)."""
        from rlsys.learner.objective import needs
        from rlsys.loop.batches import Rollouts
        from rlsys.loop.checkpoint import PromptCursor
        from rlsys.loop.pipeline import AnchorPool, sync_weights

        t = self.cfg.trainer
        self.end()
        self.batches.clear()
        self.rl.clear()
        self.anchors = load_anchors(Path(anchors_from)) if anchors_from else None
        if self.anchors is None and "anchors" in needs(self.cfg.algorithm):
            self.anchors = AnchorPool(self.cfg, self.roles, self.train_data)
        self.prompts = PromptCursor(self.train_data.batches(t.prompts_per_step, t.seed), skip=prompts_drawn)
        self.rollouts = Rollouts(self._produce, lambda v: sync_weights(self.roles, v), t.max_staleness, t.steps,
                                 start, version, t.in_flight_updates)

    def _produce(self, step: int, timer):
        from rlsys.loop.pipeline import sample_step
        from rlsys.seeds import step_seed

        out = sample_step(self.cfg, self.roles, self.train_data, self.prompts,
                          seed=step_seed(self.cfg.trainer.seed, step), timer=timer)
        self.drawn[step] = self.prompts.drawn
        return out

    def take(self, step: int, version: int) -> dict:
        """The batch of `step` for the policy of `version` (no sample more than max_staleness versions
        older), kept here; its metadata, the step's extra metrics, its stages' times (seconds before
        now) and the rollout side's fault counts."""
        from rlsys.loop.metrics import StepTimer, verifier_stats

        timer = StepTimer()
        batch, extra = self.rollouts.take(step, version, timer)
        self.batches[step] = self.rl[step] = batch
        now = time.perf_counter()
        extra = {**extra, **self.roles.verifiers.take_stats()}  # reward models' samples, seconds, tokens
        return {"meta": BatchMeta.of(batch, verifier_stats(batch.verifier_details or [])), "extra": extra,
                "ago": {k: [(now - a, now - b) for a, b in v] for k, v in timer.intervals.items()},
                "faults": self.roles.faults.take(), "drawn": self.drawn.pop(step, self.prompts.drawn),
                "notices": notices.take()}

    def rows(self, step: int, parts: list) -> list:
        """Per part (row indices of the step's batch), a reference to those rows as a RolloutBatch."""
        import ray

        batch = self.batches[step]
        return [ray.put(batch.select(p)) for p in parts]

    def attach(self, step: int, column: str, parts: list, results: list) -> None:
        """Per-sample results of the learner ranks (references, one list per part) into `column`."""
        batch = self.batches[step]
        setattr(batch, column, in_batch_order(len(batch), parts, results))

    def alias(self, step: int, column: str, source: str) -> None:
        batch = self.batches[step]
        setattr(batch, column, getattr(batch, source))

    def advantages(self, step: int) -> BatchMeta:
        """Advantages and loss mask of the step's batch (the estimator reads rewards, values and log-probs
        here), then DPH-RL's anchor samples appended; the batch's metadata as trained."""
        from rlsys.learner.advantages import compute_advantages
        from rlsys.loop.metrics import episode_stats, spread_stats, verifier_stats
        from rlsys.loop.pipeline import with_anchors

        a, batch = self.cfg.algorithm, self.batches[step]
        batch.advantages, batch.loss_mask = compute_advantages(batch, a, self.cfg.rollout.max_new_tokens)
        stats = {**verifier_stats(batch.verifier_details or []), **spread_stats(batch), **episode_stats(batch)}
        if self.anchors is not None:
            self.batches[step] = with_anchors(batch, self.anchors.next(a.divergence.anchor_samples))
        return BatchMeta.of(self.batches[step], stats)

    def finish(self, step: int, rollouts_path: str | None, table_rows: int, prompts: list | None) -> list:
        """The step is trained: its rollout log written (rollouts_path), rows of the sample table returned
        (table_rows > 0; the RL samples, not anchors), and the batch let go."""
        from rlsys.loggers.table import sample_rows

        self.batches.pop(step)
        rl = self.rl.pop(step)
        rl.old_logprobs = None  # the learners' input of this step, not a property of the samples
        if rollouts_path:
            import pyarrow.parquet as pq

            Path(rollouts_path).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(rl.to_arrow(), rollouts_path)
        return sample_rows(rl, prompts or self.train_data.prompts, table_rows) if table_rows else []

    def sync(self, version: int):
        """Push `version` into the fleet between two rounds, once the rounds due at version - 1 are done."""
        return self.rollouts.sync(version)

    def push_now(self, version: int):
        """Push `version` at once (a resume, or new learners): no run's queue is consulted."""
        from rlsys.loop.pipeline import sync_weights

        return sync_weights(self.roles, version)

    def end(self) -> None:
        if self.rollouts is not None:
            self.rollouts.close()
            self.rollouts = None

    # ---- held-out evaluation, statistics, colocation ---------------------------------------------
    def evaluate(self, n: int, seed: int) -> dict:
        """Held-out pass@1 and reward (evaluate below), between steps."""
        with self._paused():
            return evaluate(self.cfg, self.roles, self.held_out, n, seed)

    def pass_at_k(self) -> dict:
        from rlsys.eval.passk import ks_up_to
        from rlsys.eval.run import curves, sample_counts
        from rlsys.loop.pipeline import catch_up

        t0 = time.perf_counter()
        with self._paused():
            counts = sample_counts(self.cfg, self.roles.fleet, self.roles.verifiers, self.held_out, self.cfg.trainer.seed,
                                   catch_up(self.cfg, self.roles))
        overall = curves(counts, ks_up_to(self.cfg.eval.n))
        return {**{f"val/pass@{k}": v for k, v in overall["overall"].items()}, "timing_s/testing": time.perf_counter() - t0}

    @contextmanager
    def _paused(self):
        if self.rollouts is None:
            yield
        else:
            with self.rollouts.paused():
                yield

    def fleet_metrics(self) -> dict:
        fleet, m = self.roles.fleet, {}
        m["rollout/engine_restarts"] = fleet.restarts  # so far in the run
        m["perf/rollout_max_memory_gb"] = fleet.peak_memory_gb()  # the largest engine, its vLLM processes included
        if self.cfg.rollout.speculative != "none":  # acceptance of this step's drafts
            m.update(fleet.spec_metrics())
        return m

    def sleep(self) -> None:
        self.roles.fleet.sleep()

    def wake(self) -> None:
        self.roles.fleet.wake()

    def save_anchors(self, directory: str) -> int:
        """The anchor pool into a checkpoint being written (the engines cannot draw it again); its cursor."""
        if self.anchors is None:
            return 0
        (Path(directory) / ANCHORS_FILE).write_bytes(pickle.dumps(self.anchors))
        return self.anchors.cursor

    def set_learners(self, actors: list) -> None:
        """The learner group was rebuilt: pushes go to the new ranks."""
        self.roles.learners.actors = list(actors)

    def engines(self) -> list:
        """The fleet's engines now (restarted ones replace the dead)."""
        return list(self.roles.fleet.engines)

    def usage(self) -> dict:
        """This process's CPU seconds so far (every thread) and peak resident memory (benchmarks/scale.py)."""
        import resource

        return {"cpu_s": time.process_time(), "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}

    def pid(self) -> int:
        return os.getpid()


def evaluate(cfg, roles, data, n: int, seed: int) -> dict:
    """Held-out pass@1 (the solved fraction) and mean reward of n samples per prompt, sampled as `rlsys
    eval` samples (eval.temperature, eval.top_p; same seeds every call, so before and after compare),
    with each problem's solved count for a paired interval on the gain, and the fraction of samples
    with a final answer the verifier could read (a format-only gain shows there)."""
    from rlsys.eval.run import problem_counts
    from rlsys.loop.pipeline import catch_up
    from rlsys.verify.pool import require_scored

    e, t0 = cfg.eval, time.perf_counter()
    batch = roles.verifiers.score(roles.fleet.generate(data, np.arange(len(data)), seed=seed, n=n,
                                                       temperature=e.temperature, top_p=e.top_p,
                                                       catch_up=catch_up(cfg, roles)), data)
    require_scored(batch, "held-out reward")
    answered = [d.parsed is not None for d in batch.verifier_details]
    return {"accuracy": float(batch.correct.mean()), "reward_mean": float(batch.reward.mean()),
            "answered": float(np.mean(answered)), "samples": len(batch), "n": n, "temperature": e.temperature,
            "solved": problem_counts(batch)["c"].tolist(), "seconds": time.perf_counter() - t0}


def load_anchors(path: Path):
    """A checkpoint's DPH-RL anchor pool (None if it has none); details pickled as dicts by older versions
    become VerifierDetails."""
    path = path / ANCHORS_FILE if path.is_dir() else path
    if not path.is_file():
        return None
    anchors = pickle.loads(path.read_bytes())
    if anchors.pool.verifier_details and isinstance(anchors.pool.verifier_details[0], dict):
        from rlsys.verify.details import VerifierDetails

        anchors.pool.verifier_details = [VerifierDetails.from_dict(d) for d in anchors.pool.verifier_details]
    return anchors


class RolloutLost(RuntimeError):
    """The rollout manager actor died (its queue, prompt cursor and the engines it restarted went with
    it): a new one is started on the fleet's engines and the run goes on from its last checkpoint
    (trainer.max_restarts; rlsys/loop/controller.py)."""


class Rollout:
    """The controller's side of the manager: each call waits for the actor and re-raises its error as
    the error's own type; the actor's own death as RolloutLost."""

    def __init__(self, actor):
        self.actor = actor
        self.faults: dict = {}  # the rollout side's fault counts of the last step taken
        self.drawn = 0  # prompt batches drawn once the last step taken was sampled

    def call(self, method: str, *args):
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return ray.get(getattr(self.actor, method).remote(*args))
        except RayActorError as e:  # the manager itself (an actor it called fails inside: RayTaskError)
            raise RolloutLost(f"the rollout manager died during its {method} call ({type(e).__name__})") from None
        except RayTaskError as e:
            cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else None
            if cause is None:
                raise
            raise cause from None

    def take(self, step: int, version: int, timer) -> tuple["StepRef", dict]:
        """The step's batch (held by the manager) and its extra metrics; its stages' times go into timer."""
        out = self.call("take", step, version)
        now = time.perf_counter()
        for stage, spans in out["ago"].items():
            for a, b in spans:
                timer.add(stage, now - a, now - b)
        self.faults, self.drawn = out["faults"], out["drawn"]
        for line in out["notices"]:  # printed in the manager's log; the console gets them here
            print(f"[rlsys] {line}", flush=True)
        return StepRef(self, step, out["meta"]), out["extra"]

    def __getattr__(self, method: str):  # the actor's other calls, by name
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args: self.call(method, *args)


class StepRef:
    """A step batch held by the manager, behind the interface of rlsys/data/step_batch.LocalBatch."""

    def __init__(self, rollout: Rollout, step: int, meta: BatchMeta):
        self.rollout, self.step, self.meta = rollout, step, meta

    def rows(self, parts: list[np.ndarray]) -> list:
        return self.rollout.call("rows", self.step, parts)

    def attach(self, column: str, parts: list[np.ndarray], results: list) -> None:
        self.rollout.call("attach", self.step, column, parts, results)

    def alias(self, column: str, source: str) -> None:
        self.rollout.call("alias", self.step, column, source)

    def advantages(self) -> None:
        """Advantages computed by the manager; the metadata now says which samples move the weights."""
        self.meta = self.rollout.call("advantages", self.step)


def start_rollout(cfg, roles, train_data, held_out) -> Rollout:
    """The roles' manager actor, started on first use and kept as long as the roles (it owns the engines
    it restarts: they live as long as it does); configured for this run. It takes no CPU of the
    placement (it waits on the others). One call at a time, on the actor's main thread: the controller's
    calls are sequential, and the streaming loop ran slower in a threaded actor (benchmarks/scale.py,
    8,192 samples: 18-20 s of generation against 14-18 s)."""
    import ray

    if getattr(roles, "rollout", None) is None:
        actor = ray.remote(RolloutManager).options(num_cpus=0, max_concurrency=1).remote(
            cfg, roles.fleet.engines, roles.fleet.make_engine, roles.verifiers.workers,
            {name: p.workers for name, p in roles.verifiers.models.items()}, roles.reference, roles.teacher,
            roles.server_paths, roles.learners.actors, train_data, held_out)
        roles.rollout = Rollout(actor)
    else:
        roles.rollout.configure(cfg, train_data, held_out, roles.server_paths)
    roles.rollout.call("pid")  # construction errors surface here
    return roles.rollout


def end_run(rollout: Rollout, roles) -> None:
    """The run is over: its queue closed, and the fleet's engines now (restarts included) known to the
    roles (rlsys/loop/roles.shutdown_roles stops them)."""
    rollout.end()
    roles.fleet.engines = rollout.engines()
