"""Ray start-up and placement: one placement group per role, sized from the cluster config.

Capacity is checked before anything is placed, so "more learner ranks than the cluster can hold"
fails at start with the knobs that asked for it, not as a placement group pending forever.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rlsys.config import RLSysConfig, RoleResources

# Environment every actor starts with, unless the driver's environment already sets the key.
ACTOR_ENV = {"TOKENIZERS_PARALLELISM": "false", "VLLM_LOGGING_LEVEL": "WARNING"}


class ClusterError(RuntimeError):
    """The cluster cannot hold what the config asks for; the message names the knobs."""


@dataclass
class RoleDemand:
    role: str
    bundles: list[dict]  # one bundle per actor
    knobs: str  # the config keys that set this demand, for error messages


def role_demands(cfg: RLSysConfig) -> list[RoleDemand]:
    c, r, lr = cfg.cluster, cfg.rollout, cfg.learner
    teacher = cfg.algorithm.distill.teacher_path
    models = cfg.verifier.models.values()
    own = sum(m.num_actors for m in models if m.placement == "standalone")
    shared = sum(m.num_actors for m in models if m.placement == "colocated")
    rollout = role_demand("rollout", c.rollout, r.num_engines, f"rollout.num_engines={r.num_engines}",
                          gpu_scale=r.tensor_parallel_size, scale_knob="rollout.tensor_parallel_size")
    if shared and c.reward_model.gpus:  # colocated judges take a GPU share of an engine's bundle (round robin)
        extra = c.reward_model.gpus * -(-shared // r.num_engines)
        rollout.bundles = [{**b, "GPU": b.get("GPU", 0) + extra} for b in rollout.bundles]
        rollout.knobs += f" + colocated verifier.models ({shared} actors x cluster.reward_model.gpus={c.reward_model.gpus})"
    return [
        rollout,
        role_demand("learner", c.learner, lr.world_size, f"learner.world_size={lr.world_size}"),
        role_demand("verifier", c.verifier, c.num_verifiers, f"cluster.num_verifiers={c.num_verifiers}"),
        role_demand("reference", c.reference, 2 if teacher else 1,
                    "2 servers (reference and algorithm.distill.teacher_path)" if teacher else "1 server"),
        # reward_model.cpus = gpus = 0: the actors reserve nothing (no bundle; they share the node's cores)
        *([role_demand("reward_model", c.reward_model, own, f"{own} standalone verifier.models actors")]
          if own and (c.reward_model.cpus or c.reward_model.gpus or c.reward_model.resources) else []),
    ]


def role_demand(role: str, res: RoleResources, count: int, count_knob: str, gpu_scale: int = 1,
                scale_knob: str = "") -> RoleDemand:
    """`count` actors of a role, each reserving cluster.<role>.{cpus,gpus,resources} (gpus x gpu_scale)."""
    custom = dict(res.resources or {})
    bundle = {k: v for k, v in (("CPU", res.cpus), ("GPU", res.gpus * gpu_scale), *custom.items()) if v > 0}
    key = f"cluster.{role}"
    knobs = (f"{count_knob} x ({key}.cpus={res.cpus}, {key}.gpus={res.gpus}"
             + (f" x {scale_knob}={gpu_scale}" if scale_knob else "")
             + (f", {key}.resources={custom}" if custom else "") + ")")
    return RoleDemand(role, [bundle] * count, knobs)


def check_capacity(demands: list[RoleDemand], available: dict) -> None:
    for res in ("CPU", "GPU", *sorted({k for d in demands for b in d.bundles for k in b} - {"CPU", "GPU"})):
        need = sum(b.get(res, 0) for d in demands for b in d.bundles)
        have = available.get(res, 0)
        if need > have + 1e-9:
            lines = [f"  {d.role}: {sum(b.get(res, 0) for b in d.bundles):g} {res}  ({d.knobs})" for d in demands]
            raise ClusterError(
                f"the config needs {need:g} {res} but the Ray cluster has {have:g}:\n" + "\n".join(lines)
                + "\nLower these knobs (e.g. learner.world_size) or add nodes.")


def pin_to_cpus(variable: str) -> None:
    """Pin this process (every thread it has now, hence the threads and processes they start later)
    to the CPUs listed in the environment variable, e.g. RLSYS_ROLLOUT_CPUS=0 (benchmarks/async.py:
    engines and learners on disjoint cores). vLLM's CPU workers bind their OpenMP threads themselves:
    they are told the same cores (VLLM_CPU_OMP_THREADS_BIND)."""
    cpus = os.environ.get(variable)
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cpus
    for tid in os.listdir("/proc/self/task"):  # sched_setaffinity(pid) sets one thread's mask only
        os.sched_setaffinity(int(tid), {int(c) for c in cpus.split(",")})


def init_ray(cfg: RLSysConfig) -> None:
    import ray

    from rlsys.runtime.quiet_console import ray_init_options
    from rlsys.runtime.signals import keep_sigterm_handler

    if ray.is_initialized():
        return
    # A job's runtime_env env_vars are in this process's environment too; Ray refuses to merge
    # the same key twice, so only add what is not set already.
    wanted = {**ACTOR_ENV, "VLLM_CPU_KVCACHE_SPACE": str(cfg.rollout.kv_cache_gb)}
    env = {"env_vars": {k: v for k, v in wanted.items() if k not in os.environ}}
    logs = ray_init_options(cfg, env)  # logger.verbose=false: actor logs to <run>/rlsys.log, not the console
    address = cfg.cluster.address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":  # under `ray job submit` RAY_ADDRESS points at the cluster
        ray.init(address=address, runtime_env=env, **logs)
    else:  # "local" or a CPU count: a new local Ray of that size, never someone else's running one
        local = address == "local" or cfg.cluster.num_cpus
        ray.init(address="local" if local else None, num_cpus=cfg.cluster.num_cpus, include_dashboard=False,
                 runtime_env=env, **logs)
    keep_sigterm_handler()  # ray.init installs its own (exit at once); a run ends on SIGTERM as on Ctrl-C


def stop_ray() -> None:
    """ray.shutdown(): a local Ray this process started stops with every process it ran; a joined
    cluster is only left (this job's actors end with it). Ray's auto-init is turned off first: a
    thread still inside a call (an async producer's round) must not start a new local Ray."""
    import ray

    try:
        from ray._private import auto_init_hook

        auto_init_hook.enable_auto_connect = False
    except ImportError:  # another Ray version: its auto-init stays as it is
        pass
    ray.shutdown()


def place_roles(cfg: RLSysConfig, roles: tuple[str, ...] | None = None) -> dict:
    """Placement group per role (all, or just `roles`), after checking the cluster can hold them at once."""
    import ray
    from ray.util.placement_group import placement_group

    demands = [d for d in role_demands(cfg) if roles is None or d.role in roles]
    check_capacity(demands, ray.cluster_resources())
    demands, shared = colocated(cfg, demands)
    groups = {}
    for d in demands:
        pg = placement_group(d.bundles, strategy="PACK", name=f"rlsys-{d.role}")
        ready, _ = ray.wait([pg.ready()], timeout=cfg.cluster.placement_timeout_s)
        if not ready:
            raise ClusterError(f"could not place role '{d.role}' ({d.knobs}) within "
                               f"cluster.placement_timeout_s={cfg.cluster.placement_timeout_s}s; "
                               f"cluster resources: {ray.available_resources()}")
        groups[d.role] = (pg, d.bundles)
    for d in shared:  # engine i and learner rank i take their own share of bundle i
        groups[d.role] = (groups["colocated"][0], d.bundles)
    return groups


def verifier_roles(cfg: RLSysConfig) -> tuple[str, ...]:
    """The roles that score samples: the verifier pool, reward-model actors, and the rollout group where
    colocated reward models live."""
    places = {m.placement for m in cfg.verifier.models.values()}
    return ("verifier", *(("reward_model",) if "standalone" in places else ()),
            *(("rollout",) if "colocated" in places else ()))


def colocated(cfg: RLSysConfig, demands: list[RoleDemand]) -> tuple[list[RoleDemand], list[RoleDemand]]:
    """cluster.colocate: one bundle per GPU holding engine i and learner rank i (Ray places both
    actors of a bundle on the same GPU as fractional shares). Returns (demands to place, the two
    roles that share the new "colocated" group)."""
    pair = [d for d in demands if d.role in ("rollout", "learner")]
    if not cfg.cluster.colocate or len(pair) < 2:
        return demands, []
    merged = [{k: a.get(k, 0) + b.get(k, 0) for k in {*a, *b}} for a, b in zip(pair[0].bundles, pair[1].bundles)]
    rest = [d for d in demands if d not in pair]
    return rest + [RoleDemand("colocated", merged, f"{pair[0].knobs}; {pair[1].knobs}")], pair


def actor_options(groups: dict, role: str, index: int) -> dict:
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg, bundles = groups[role]
    b = bundles[index]
    custom = {k: v for k, v in b.items() if k not in ("CPU", "GPU")}  # cluster.<role>.resources
    return {"num_cpus": b.get("CPU", 0), "num_gpus": b.get("GPU", 0), **({"resources": custom} if custom else {}),
            "scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)}
