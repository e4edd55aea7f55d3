"""Ray start-up and placement: one placement group per role, sized from the cluster config.

Capacity is checked before anything is placed, so "more learner ranks than the cluster can hold"
fails at start with the knobs that asked for it, not as a placement group pending forever.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rlsys.config import RLSysConfig

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

    def bundle(cpus: float, gpus: float, custom: dict) -> dict:  # custom: cluster.<role>_resources
        return {k: v for k, v in (("CPU", cpus), ("GPU", gpus), *dict(custom or {}).items()) if v > 0}

    return [
        RoleDemand("rollout", [bundle(c.rollout_cpus, c.rollout_gpus * r.tensor_parallel_size, c.rollout_resources)]
                   * r.num_engines,
                   f"rollout.num_engines={r.num_engines} x (cluster.rollout_cpus={c.rollout_cpus}, "
                   f"cluster.rollout_gpus={c.rollout_gpus} x rollout.tensor_parallel_size={r.tensor_parallel_size}"
                   f"{custom_knob('rollout', c.rollout_resources)})"),
        RoleDemand("learner", [bundle(c.learner_cpus, c.learner_gpus, c.learner_resources)] * lr.world_size,
                   f"learner.world_size={lr.world_size} x (cluster.learner_cpus={c.learner_cpus}, "
                   f"cluster.learner_gpus={c.learner_gpus}{custom_knob('learner', c.learner_resources)})"),
        RoleDemand("verifier", [bundle(c.verifier_cpus, 0, c.verifier_resources)] * c.num_verifiers,
                   f"cluster.num_verifiers={c.num_verifiers} x cluster.verifier_cpus={c.verifier_cpus}"
                   f"{custom_knob('verifier', c.verifier_resources)}"),
        RoleDemand("reference", [bundle(c.reference_cpus, c.reference_gpus, c.reference_resources)]
                   * (2 if cfg.algorithm.distill.teacher_path else 1),
                   f"cluster.reference_cpus={c.reference_cpus}, cluster.reference_gpus={c.reference_gpus}"
                   + (" (x2: reference and algorithm.distill.teacher_path)" if cfg.algorithm.distill.teacher_path else "")),
    ]


def custom_knob(role: str, res: dict) -> str:
    return f", cluster.{role}_resources={dict(res)}" if res else ""


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

    from rlsys.console import ray_init_options

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
    custom = {k: v for k, v in b.items() if k not in ("CPU", "GPU")}  # cluster.<role>_resources
    return {"num_cpus": b.get("CPU", 0), "num_gpus": b.get("GPU", 0), **({"resources": custom} if custom else {}),
            "scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)}
