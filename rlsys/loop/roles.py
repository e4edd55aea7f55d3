"""The roles of a run as Ray actors: started once, and reset between objectives that share them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dataclasses import asdict

from rlsys.config import RLSysConfig
from rlsys.runtime.deadlines import PROBE_GROUP, Deadlines
from rlsys.runtime.faults import FaultLog

if TYPE_CHECKING:
    from rlsys.learner.group import LearnerGroup
    from rlsys.rollout.fleet import RolloutFleet
    from rlsys.verify.pool import VerifierPool


@dataclass
class Roles:
    fleet: RolloutFleet
    verifiers: VerifierPool
    reference: object | None  # ReferenceServer actor: the initial policy (None: no term reads it)
    learners: LearnerGroup
    teacher: object | None = None  # ReferenceServer actor holding algorithm.distill.teacher_path
    faults: FaultLog = field(default_factory=FaultLog)  # actor deaths and lost groups, per step (rlsys/runtime/faults.py)
    server_paths: dict = field(default_factory=dict)  # role -> the model its server must hold (reference, teacher)
    deadlines: Deadlines = field(default_factory=Deadlines)  # every wait's deadline, from measured times (rlsys/runtime/deadlines.py)
    rollout: object | None = None  # the rollout manager (rlsys/rollout/manager.py), started by the first run


def deadlines_of(cfg: RLSysConfig) -> Deadlines:
    return Deadlines(cfg.cluster.deadline_scale, asdict(cfg.cluster.deadline_s))


def start_fleet(cfg: RLSysConfig, groups: dict, model_path: str, faults: FaultLog | None = None,
                deadlines: Deadlines | None = None) -> RolloutFleet:
    """rollout.num_engines RolloutWorker actors serving model_path, in the rollout placement group."""
    import ray

    from rlsys.runtime.cluster import actor_options
    from rlsys.rollout.fleet import RolloutFleet
    from rlsys.rollout.worker import RolloutWorker, engine_spec

    specs = [engine_spec(cfg, model_path, i) for i in range(cfg.rollout.num_engines)]

    def make_engine(i: int):  # also used to replace a dead engine in its own bundle
        return ray.remote(RolloutWorker).options(**actor_options(groups, "rollout", i)).remote(specs[i])

    return RolloutFleet([make_engine(i) for i in range(cfg.rollout.num_engines)], cfg.rollout, make_engine, faults,
                        deadlines or deadlines_of(cfg))


def start_verifiers(cfg: RLSysConfig, groups: dict, faults: FaultLog | None = None,
                    deadlines: Deadlines | None = None) -> VerifierPool:
    import ray

    from rlsys.runtime.cluster import actor_options
    from rlsys.verify.model_pool import start_model_pools
    from rlsys.verify.pool import VerifierPool
    from rlsys.verify.worker import VerifierWorker

    # Threaded actors (concurrent callers share the scorer processes) that come back if they die.
    actor = ray.remote(concurrency_groups=PROBE_GROUP)(VerifierWorker)  # `ping` answers beside the calls
    workers = [actor.options(**actor_options(groups, "verifier", i), max_concurrency=16, max_restarts=-1).remote(cfg.verifier)
               for i in range(cfg.cluster.num_verifiers)]
    ray.get([w.ready.remote() for w in workers])
    faults = faults or FaultLog()  # one log for the pool and its reward models
    models = start_model_pools(cfg, groups, faults)  # verifier.models: reward models and judges
    return VerifierPool(workers, faults, deadlines or deadlines_of(cfg), cfg.verifier, models)


def start_roles(cfg: RLSysConfig, model_path: str, pad_id: int) -> Roles:
    """Ray actors for every role, each in its role's placement group."""
    import ray

    from rlsys.runtime.cluster import actor_options, init_ray, place_roles
    from rlsys.learner.group import LearnerGroup
    from rlsys.learner.role_config import LearnerRoleConfig, learner_role_config, reference_on_server
    from rlsys.learner.worker import LearnerWorker
    from rlsys.reference.server import ReferenceServer

    init_ray(cfg)
    groups = place_roles(cfg)
    faults, deadlines = FaultLog(), deadlines_of(cfg)
    fleet = start_fleet(cfg, groups, model_path, faults, deadlines)
    verifiers = start_verifiers(cfg, groups, faults, deadlines)
    # The reference server runs only when a term of the objective reads it and the learner ranks do not
    # hold it (cluster.reference_with_learners); a teacher is a second server.
    servers = ([model_path] if reference_on_server(cfg) else [None]) + \
        ([cfg.algorithm.distill.teacher_path] if cfg.algorithm.distill.teacher_path else [])
    server = ray.remote(concurrency_groups=PROBE_GROUP)(ReferenceServer)
    reference, *teacher = [
        # stateless: Ray restarts a killed server, and the pipeline re-sends the call it died in
        None if path is None else server.options(**actor_options(groups, "reference", i), max_restarts=-1).remote(
            path, cfg.model.dtype, cfg.rollout.temperature, pad_id, cfg.learner.micro_batch_size, cfg.learner,
            cfg.cluster.reference.cpus, cfg.cluster.threads)
        for i, path in enumerate(servers)]
    W, learner = cfg.learner.world_size, ray.remote(concurrency_groups=PROBE_GROUP)(LearnerWorker)

    def make_learner(rank: int, c: LearnerRoleConfig):  # also used to rebuild the group after a rank died
        return learner.options(**actor_options(groups, "learner", rank)).remote(c, model_path, rank, W)

    learner_cfg = learner_role_config(cfg)
    learners = [make_learner(i, learner_cfg) for i in range(W)]
    ray.get([e.get_version.remote() for e in fleet.engines])  # surface engine start-up errors here
    learner_group = LearnerGroup(learners, learner_cfg, make_learner, deadlines)
    paths = {"reference": model_path, **({"teacher": cfg.algorithm.distill.teacher_path} if teacher else {})}
    return Roles(fleet, verifiers, reference, learner_group, teacher[0] if teacher else None, faults, paths, deadlines)


def reset_roles(cfg: RLSysConfig, roles: Roles) -> None:
    """Reuse running roles for a new objective: base weights in learners and engines (version 0),
    the teacher swapped in if cfg names another one. The roles must have been started with a
    teacher slot if cfg needs one."""
    import ray

    from rlsys.learner.role_config import learner_role_config
    from rlsys.loop.pipeline import sync_weights

    roles.learners.reset(learner_role_config(cfg))
    roles.fleet.rollout = cfg.rollout
    if getattr(roles, "rollout", None) is not None:  # its fleet serves the engines now
        roles.rollout.push_now(0)
    else:
        sync_weights(roles, 0)
    if cfg.algorithm.distill.teacher_path:
        if roles.teacher is None:
            raise ValueError("these roles were started without a teacher; start them with algorithm.distill.teacher_path set")
        ray.get(roles.teacher.load.remote(cfg.algorithm.distill.teacher_path))
        roles.server_paths["teacher"] = cfg.algorithm.distill.teacher_path  # a restarted teacher reloads it


def shutdown_roles(roles: Roles, timeout_s: float = 10.0) -> None:
    """Release every actor of the run in bounded time: the learner ranks get timeout_s to leave their
    process group (a rank busy or hung in a collective does not answer), then all actors are killed,
    without restart (verifiers and servers would otherwise come back)."""
    import ray

    ranks, engines, manager = list(roles.learners.actors), list(roles.fleet.engines), getattr(roles, "rollout", None)
    if manager is not None:  # it restarted engines of its own
        try:
            engines += ray.get(manager.actor.engines.remote(), timeout=timeout_s)
        except Exception:  # noqa: BLE001  gone or stuck: killed below all the same
            pass
    try:
        ray.wait([a.shutdown.remote() for a in ranks], num_returns=len(ranks), timeout=timeout_s)
    except Exception:  # noqa: BLE001  a dead rank: killed below all the same
        pass
    judges = [w for p in roles.verifiers.models.values() for w in p.workers]
    for actor in [*engines, *roles.verifiers.workers, *judges, roles.reference, roles.teacher, *ranks,
                  manager and manager.actor]:
        try:
            if actor is not None:
                ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001  already gone
            pass
