"""Environments the agent tests run (loaded by path through rollout.agent.modules, as a user's file is)."""

import time

from rlsys.agents import Environment, Step, register_agent, register_env


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


@register_agent("test_chat_agent")
async def chat_agent(client, row):
    """Three calls through the OpenAI client, a tool message between them; reward 1 if the last reply says anything."""
    messages = list(row["messages"])
    for k in range(2):
        r = await client.chat.completions.create(model="policy", messages=messages, max_tokens=24)
        said = r.choices[0].message.content
        messages += [{"role": "assistant", "content": said}, {"role": "tool", "content": f"{len(said)} characters"}]
    r = await client.chat.completions.create(model="policy", messages=messages, max_tokens=24)
    return float(bool(r.choices[0].message.content.strip()))


@register_agent("test_rewriting_agent")
async def rewriting_agent(client, row):
    """Edits its first reply before the second call: the episode no longer extends what was sampled."""
    messages = list(row["messages"])
    r = await client.chat.completions.create(model="policy", messages=messages, max_tokens=16)
    messages += [{"role": "assistant", "content": "Edited: " + r.choices[0].message.content},
                 {"role": "user", "content": "And?"}]
    await client.chat.completions.create(model="policy", messages=messages, max_tokens=16)
    return 1.0
