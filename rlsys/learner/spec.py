"""One declared spec per objective term: what it needs, which knobs it reads, which stats it reports.

A term is an advantage estimator, a policy loss, a regulariser, a divergence or a rollout correction. Everything the
rest of the system must know about it is here, next to its function, so adding one is one
decorated function (and a preset yaml), never an edit elsewhere:
  needs   roles and inputs it reads; the controller starts and feeds only what some active term needs
            reference          reference log-probs (the initial policy) on every sample
            teacher            teacher log-probs (algorithm.distill.teacher_path)
            critic             a learned value model trained in the learner group
            full_distribution  per-token quantities of the whole next-token distribution, computed in
                               the chunked log-prob head (head(a) returns token_logprobs' arguments)
            sequence_ratio     a sequence-level importance ratio (needs sequence-level advantages)
            anchors            DPH-RL: samples drawn once from the initial policy, mixed into each step
  knobs   algorithm.<key> it reads (dotted for a grouped one: "lp_reg.coef"); a policy loss or rollout
          correction is called with exactly these as keyword arguments, dots as underscores (lp_reg_coef)
  stats   what it returns besides its value: each summed (or max-ed) over micro-batches and learner
          ranks by its declared reduction and logged as a metric; a returned stat that is not
          declared is an error, so nothing is silently dropped
A leaf module: the registries (learner/losses.py, learner/advantages.py) import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

NEEDS = ("reference", "teacher", "critic", "full_distribution", "sequence_ratio", "anchors")
REDUCTIONS = ("sum", "max", "first")  # first: rank 0's value (identical on every rank, e.g. a global norm)


@dataclass(frozen=True)
class Stat:
    name: str  # key in the term's stats dict: the metric's own name (docs/metrics.md) unless `metric` is set
    reduce: str = "sum"  # over micro-batches and ranks: sum | max | first
    per_token: bool = False  # logged divided by the step's RL tokens (a fraction), else as reduced
    metric: str | None = None  # the metric's name when it is not `name` (a per-token stat: name is its sum)

    @property
    def key(self) -> str:
        return self.metric or self.name


@dataclass(frozen=True)
class Spec:
    kind: str  # advantage | loss | regulariser | divergence | correction
    name: str
    fn: Callable
    needs: frozenset[str] = frozenset()
    knobs: tuple[str, ...] = ()
    stats: tuple[Stat, ...] = ()
    active: Callable | None = None  # active(algorithm_config) -> bool; None = active when selected by name
    head: Callable | None = None  # full_distribution: head(a) -> extra token_logprobs arguments
    per_token_advantage: bool = False  # advantage: differs per token (not one value per sequence)
    kl_in_returns: bool = False  # advantage: folds kl.placement=reward's KL into its returns itself
    advantage_weighted: bool = False  # loss: exactly 0 (no gradient) on tokens whose advantage is 0


SPECS: dict[tuple[str, str], Spec] = {}


def declare(kind: str, name: str, table: dict, *, needs=(), knobs=(), stats=(), **extra):
    """Decorator: put fn in its registry `table` under `name` and record its spec."""
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"{kind} {name!r}: unknown needs {sorted(unknown)}; known: {list(NEEDS)}")
    for s in stats:
        if s.reduce not in REDUCTIONS:
            raise ValueError(f"{kind} {name!r}: stat {s.name} reduce must be one of {REDUCTIONS}")

    def wrap(fn):
        table[name] = fn
        SPECS[kind, name] = Spec(kind, name, fn, frozenset(needs), tuple(knobs), tuple(stats), **extra)
        return fn

    return wrap


def knob_values(spec_: Spec, a) -> dict:
    """The keyword arguments a term's function takes: its knobs' values from algorithm config `a`."""
    out = {}
    for knob in spec_.knobs:
        value = a
        for part in knob.split("."):
            value = getattr(value, part)
        out[knob.replace(".", "_")] = value
    return out


def spec(kind: str, name: str) -> Spec:
    return SPECS[kind, name]
