"""Multi-turn episodes (rlsys/agents/): which rows run as episodes, and their typed budgets."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AgentConfig:
    enabled: bool = True  # rows with an environment run as episodes; false = every row is one turn (the same data without its tools)
    modules: list[str] = field(default_factory=list)  # modules (or .py files) that register environments (@register_env); imported in the tool processes and the driver
    max_turns: int = 4  # model turns per episode; the episode is cut (truncated) before a turn past this
    max_tool_calls: int = 4  # tool calls per episode (as the environment counts them in Step.tool_calls)
    max_turn_tokens: int = 0  # sampled tokens per model turn (0 = what is left of rollout.max_new_tokens, which bounds all turns and observations together)
    max_observation_tokens: int = 64  # tokens of one observation's content; a longer one keeps its first this many tokens (episode/observation_cut counts it)
    tool_timeout_s: float = 10.0  # one environment call (reset or step, i.e. a tool call): past it the tool process is killed, the episode ends with status tool_error
    episode_timeout_s: float = 300.0  # a whole episode: past it the episode ends with status aborted (its tokens so far are kept, without gradient)
    tool_workers: int = 2  # tool processes per rollout engine (environment calls run there, killable)


def check_agent(ag: AgentConfig, check) -> None:
    """Range checks of rollout.agent.* (check(ok, key, msg) raises ConfigError naming the key)."""
    for key in ("max_turns", "tool_workers", "max_observation_tokens"):
        check(getattr(ag, key) >= 1, f"rollout.agent.{key}", f"must be >= 1, got {getattr(ag, key)}")
    for key in ("max_tool_calls", "max_turn_tokens"):
        check(getattr(ag, key) >= 0, f"rollout.agent.{key}", f"must be >= 0, got {getattr(ag, key)}")
    for key in ("tool_timeout_s", "episode_timeout_s"):
        check(getattr(ag, key) > 0, f"rollout.agent.{key}", f"must be > 0 seconds, got {getattr(ag, key)}")
