"""Environments the agent tests run (loaded by path through rollout.agent.modules, as a user's file is)."""

import time

from rlsys.agents import Environment, Step, register_env


@register_env("test_chatty")
class Chatty(Environment):
    """Answers every turn with an observation: only a budget ends its episodes."""

    def step(self, state, action):
        return Step(observation=f"You wrote {len(action)} characters. Go on.", tool_calls=1)


@register_env("test_counter")
class Counter(Environment):
    """Counts its steps in the state (changed in place); done at the third, with the count as reward."""

    def reset(self, row):
        return {"steps": 0, "truth": row["ground_truth"]}

    def step(self, state, action):
        state["steps"] += 1
        if state["steps"] == 3:
            return Step(done=True, reward=float(state["steps"]), info={"truth": state["truth"]})
        return Step(observation=f"step {state['steps']}")


@register_env("test_hang")
class Hang(Environment):
    def step(self, state, action):
        time.sleep(3600)


@register_env("test_boom")
class Boom(Environment):
    def step(self, state, action):
        raise RuntimeError("the tool broke")


@register_env("test_flood")
class Flood(Environment):
    """A tool that prints 100 MB."""

    def step(self, state, action):
        return Step(observation="x" * 100_000_000)
