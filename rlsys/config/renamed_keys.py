"""Config keys that were renamed: on the command line they fail naming the new key; in the
config.json of an older checkpoint they are moved to the new key, so the checkpoint still resumes."""

from __future__ import annotations

from rlsys.errors import ConfigError

_ALGORITHM_GROUPED = {  # the algorithm settings' grouping (algorithm.optim, .kl, .critic, ...)
    "lr": "optim.lr", "lr_warmup_steps": "optim.warmup_steps", "lr_schedule": "optim.schedule",
    "weight_decay": "optim.weight_decay", "grad_clip": "optim.grad_clip",
    "kl_coef": "kl.coef", "kl_estimator": "kl.estimator", "kl_placement": "kl.placement", "kl_metric": "kl.metric",
    "critic": "critic.enabled", "critic_lr": "critic.lr", "gamma": "critic.gamma", "gae_lambda": "critic.gae_lambda",
    "dynamic_sampling": "sampling.dynamic", "max_sampling_rounds": "sampling.max_rounds",
    "overlong_buffer": "sampling.overlong_buffer",
    "divergence": "divergence.name", "divergence_coef": "divergence.coef",
    "anchor_samples": "divergence.anchor_samples", "anchor_pool": "divergence.anchor_pool",
    "teacher_path": "distill.teacher_path", "distill_lambda": "distill.scale", "teacher_kl_coef": "distill.kl_coef",
    "teacher_kl_coef_end": "distill.kl_coef_end", "teacher_kl_mask_correct": "distill.kl_mask_correct",
    "lp_reg_coef": "lp_reg.coef", "lp_reg_kappa": "lp_reg.kappa", "lp_reg_rho": "lp_reg.rho",
    "rollout_correction": "rollout_correction.mode", "rollout_correction_level": "rollout_correction.level",
    "rollout_correction_cap": "rollout_correction.cap", "rollout_correction_low": "rollout_correction.low",
    "rollout_correction_high": "rollout_correction.high", "rollout_correction_bypass": "rollout_correction.bypass",
}
_CLUSTER_ROLES = {f"{role}_{what}": f"{role}.{what}"  # per-role resources: cluster.<role>.{cpus,gpus,resources}
                  for role in ("rollout", "learner", "verifier", "reference") for what in ("cpus", "gpus", "resources")
                  if (role, what) != ("verifier", "gpus")}  # verifiers had no GPU knob
# old full key -> new full key
RENAMED = {
    **{f"algorithm.{old}": f"algorithm.{new}" for old, new in _ALGORITHM_GROUPED.items()},
    **{f"cluster.{old}": f"cluster.{new}" for old, new in _CLUSTER_ROLES.items()},
    "model.warmup_steps": "model.pretrain_steps",  # the tiny model's pretraining, not algorithm.optim.warmup_steps
    "model.warmup_lr": "model.pretrain_lr",
    "task.steps": "task.max_ops",  # operations per word problem, not trainer.steps
    "trainer.eval_n": "eval.before_after_samples",  # held-out samples before/after RL, not eval.n (pass@k)
}


def _is_old(key: str, value: object) -> bool:
    """key=value uses a renamed key. A key that is now a group (algorithm.critic) is old only with a
    plain value: algorithm.critic={enabled: true} sets today's group."""
    if key not in RENAMED:
        return False
    now_a_group = RENAMED[key].startswith(key + ".")
    return not (now_a_group and (isinstance(value, dict) or str(value).lstrip().startswith("{")))


def check_overrides(overrides: list[str]) -> None:
    """ConfigError naming the new key of every override that uses a renamed one
    (algorithm.rollout_correction_cap=3 -> algorithm.rollout_correction.cap)."""
    found = []
    for arg in overrides:
        key, _, value = arg.lstrip("+~").partition("=")
        if _is_old(key, value):
            found.append(f"{key} was renamed to {RENAMED[key]}")
    if found:
        raise ConfigError("; ".join(found))


def current_layout(saved: dict) -> dict:
    """A config.json written by an older version, its renamed keys moved to today's names (in place)."""
    moved = {}
    for old, new in RENAMED.items():  # take every old value out first: an old key may be a new group's name
        parent, name = _parent(saved, old)
        if parent is not None and name in parent and _is_old(old, parent[name]):
            moved[new] = parent.pop(name)
    for new, value in moved.items():
        *groups, name = new.split(".")
        node = saved
        for g in groups:
            node = node.setdefault(g, {})
        node[name] = value
    return saved


def _parent(d: dict, dotted: str) -> tuple[dict | None, str]:
    *groups, name = dotted.split(".")
    for g in groups:
        d = d.get(g) if isinstance(d, dict) else None
    return (d if isinstance(d, dict) else None), name
