"""Environments: what answers a model's turn in a multi-turn episode (docs/agents.md).

An environment is a class with `reset(row) -> state` and `step(state, action) -> Step`, registered
under a name with @register_env. A row runs as an episode when its `env` column names one, or when an
environment is registered under its data_source (it then owns that source's reward: an episode it ends
without one, or a budget cuts, gets 0); any other row is an episode of one turn, as before.
Both methods run in a tool process (rlsys/agents/tools.py), never in the engine: a step that hangs,
raises or prints a gigabyte ends its own episode, not the run. The state travels there and back
pickled, so changes made to it in place are kept (or return a new one in Step.state).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ENVS: dict[str, "Environment"] = {}
KEEP = object()  # Step.state default: the state as step left it


@dataclass
class Step:
    observation: str | None = None  # the content sent back to the model as the next turn (None: the episode ends)
    done: bool = False  # the episode is over (no observation is sent)
    reward: float | None = None  # with done: the episode's reward; None = the verifier pool scores the response
    info: dict = field(default_factory=dict)  # anything to keep in the rollout log (JSON-able)
    tool_calls: int = 0  # tools this step ran (counted against rollout.agent.max_tool_calls)
    state: Any = KEEP  # a new state for the next step (default: the state as passed, changed in place)


class Environment:
    """Subclass and register with @register_env("name"). One instance per process serves every episode:
    keep an episode's data in its state, not on self."""

    stop: tuple[str, ...] = ()  # strings that end a model turn (kept in the turn's tokens), besides EOS
    role: str = "tool"  # chat role of observations in chat-format episodes

    def reset(self, row: dict) -> Any:
        """The episode's state for a dataset row (prompt, ground_truth, data_source, extra_info). The
        first observation is the row's prompt."""
        return {}

    def step(self, state: Any, action: str) -> Step:
        """The model's turn (its text, special tokens skipped) -> the next observation, or the end."""
        raise NotImplementedError

    def demo(self, prompt: str, ground_truth: str) -> str | None:
        """A worked response (turns and observations as text) for the tiny model's supervised warm-up;
        None = the ground truth alone."""
        return None


def register_env(name: str):
    """Class decorator: the environment `name` (a row's `env` column, or a data_source it serves)."""
    def wrap(cls):
        if not (isinstance(cls, type) and issubclass(cls, Environment)):
            raise TypeError(f"@register_env({name!r}) decorates a subclass of rlsys.agents.Environment, got {cls!r}")
        ENVS[name] = cls()
        return cls

    return wrap


def env_of_row(env: str | None, data_source: str, where: str) -> str | None:
    """The environment a row runs in: its `env` field, else one registered for its data_source, else
    None (one turn). An `env` naming no registered environment is an error naming the row."""
    if env:
        if env not in ENVS:
            raise ValueError(f"{where}: unknown env {env!r} (column 'env'); registered: {sorted(ENVS)} "
                             f"(add yours with @register_env and rollout.agent.modules)")
        return env
    return data_source if data_source in ENVS else None
