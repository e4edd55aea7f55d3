"""The objective an `algorithm` config describes: its active terms (learner/spec.py), what they
need, and the stats they report. The controller, the roles and the config checks ask here, never
for a term by name."""

from __future__ import annotations

import importlib

from rlsys.learner import advantages, losses  # noqa: F401  (registers the built-in terms)
from rlsys.learner.losses import CORRECTION_STATS
from rlsys.learner.spec import SPECS, Spec, Stat, spec


def load_plugins(modules) -> None:
    """Import algorithm.modules: user files that register more terms (register_policy_loss, ...).
    Every process that computes an objective calls it (controller, learner ranks)."""
    for name in modules:
        importlib.import_module(name)


def active_terms(a) -> list[Spec]:
    """The chosen advantage and policy loss, and every regulariser/divergence switched on."""
    terms = [spec("advantage", a.advantage), spec("loss", a.loss)]
    terms += [s for (kind, _), s in SPECS.items() if kind in ("regulariser", "divergence") and s.active(a)]
    return terms


def needs(a) -> set[str]:
    """Union of the active terms' needs; algorithm.kl.metric asks for the reference as a metric."""
    out = set().union(*(t.needs for t in active_terms(a)))
    return out | {"reference"} if a.kl.metric else out


def advantage_only(a) -> bool:
    """The objective is an advantage-weighted policy loss and nothing else (no regulariser, divergence
    or critic): a sample whose advantage is 0 at every token then adds exactly nothing to the update."""
    terms = active_terms(a)
    return len(terms) == 2 and terms[1].advantage_weighted and not a.critic.enabled


def objective_stats(a) -> tuple[Stat, ...]:
    return tuple(s for t in active_terms(a) for s in t.stats)


# The learner's own stats (every objective); each term's are declared in its spec (learner/spec.py).
# A stat logged as it is carries its metric name; the sums are divided by `tokens` into metrics (metrics.py).
LEARNER_STATS = (Stat("actor/pg_loss"), Stat("tokens"), Stat("entropy_sum"), Stat("kl_sum"), Stat("mismatch_sum"),
                 Stat("training/rollout_logprob_diff_max", "max"), Stat("actor/grad_norm", "first"),
                 Stat("value_grad_norm", "first"), Stat("actor/lr", "first"), Stat("train_seconds", "max"),
                 Stat("train_cpu_seconds", "sum"), Stat("perf/max_memory_gb", "max"),
                 *(Stat(k, "sum") for k in ("perf/learner_params_gb", "perf/learner_trainable_gb",
                                             "perf/learner_grads_gb", "perf/learner_optimizer_gb")))


def reductions(a) -> dict[str, str]:
    """stat name -> how it combines over micro-batches and ranks, for the objective of `a`."""
    return {s.name: s.reduce for s in LEARNER_STATS + CORRECTION_STATS + objective_stats(a)}


def combine(values: list[float], how: str) -> float:
    return {"sum": sum, "max": max, "first": lambda v: v[0]}[how](values)


def report(stats: dict, a) -> dict:
    """Metrics of every declared stat of the active terms (per-token ones over the step's RL tokens)."""
    return report_stats(stats, objective_stats(a))


def report_stats(stats: dict, declared: tuple[Stat, ...]) -> dict:
    tokens = max(stats.get("tokens", 0.0), 1.0)
    return {s.key: stats.get(s.name, 0.0) / tokens if s.per_token else stats.get(s.name, 0.0) for s in declared}


def report_correction(stats: dict) -> dict:
    """rollout_corr/* metrics (every correction mode reports them, `none` included)."""
    return report_stats(stats, CORRECTION_STATS)
