"""One episode on one engine: model turns and observations, token-in, token-out.

Turn k's request is the prompt's ids plus every id of the episode so far, as they were: the ids the
engine sampled are appended verbatim (never decoded and encoded again), and an observation is
tokenized on its own and appended after them (a suffix: earlier turns are never re-rendered). In a
chat-format episode the observation is the chat template's message of the environment's role, cut out
of the template between the end of an assistant message and the next generation prompt; the template
text the engine did not emit (the newline after its end-of-turn token, or the whole end-of-turn when a
stop string ended the turn) is part of that suffix. Sampled tokens carry mask 1 and their log-probs;
observation tokens mask 0.

Budgets (rollout.agent, rollout.max_new_tokens for all the response's tokens) end an episode before
anything past them is appended, so an episode always ends on a model turn. Each ends with a status:
  completed   the environment said done after a turn that ended by itself (EOS or a stop string)
  truncated   a budget ran out: turns, tool calls, response tokens, or the last turn hit its token cap
  aborted     rollout.agent.episode_timeout_s passed; the tokens so far are kept, with mask 0
  tool_error  the environment raised, hung past rollout.agent.tool_timeout_s or its process died;
              kept with mask 0 (a fault of the environment is no signal about the policy)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

STATUSES = ("completed", "truncated", "aborted", "tool_error")
SAMPLE_STRIDE, TURN_STRIDE = 4099, 67  # > any rollout.n, > any max_turns: every (sample, turn) its own seed


def episode_seed(group_seed: int, sample: int, turn: int) -> int:
    """The sampling seed of one turn of one sample of a group (the same on any engine)."""
    return (group_seed * SAMPLE_STRIDE + sample) * TURN_STRIDE + turn


@dataclass
class Episode:
    """One sample as the engine ran it: per response token its id, log-prob, mask, turn and version."""
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # 0.0 where mask is 0 (written as null in the log)
    mask: list[int] = field(default_factory=list)  # 1 = sampled by the policy, 0 = observation or template
    turns: list[int] = field(default_factory=list)  # the model turn a token belongs to (observations: the turn they answer)
    versions: list[int] = field(default_factory=list)  # policy version that sampled it (observations: the turn's)
    requests: list[int] = field(default_factory=list)  # per model turn: how many ids of the response its request held (replay checks)
    status: str = "completed"
    finish_reason: str = "stop"
    tool_calls: int = 0
    observation_tokens: int = 0
    observation_cut: int = 0  # observations cut to rollout.agent.max_observation_tokens
    reward: float | None = None  # the environment's, if it gave one
    info: dict = field(default_factory=dict)
    prompt: list[int] | None = None  # agents: the ids of their first call (else the row's prompt)
    ended: bool = False

    @property
    def num_turns(self) -> int:
        return len(self.requests)

    def end(self, status: str, reason: str | None = None) -> "Episode":
        self.status, self.ended = status, True
        self.finish_reason = {"completed": "stop", "truncated": "length"}.get(status, status)
        if reason:
            self.info["end"] = reason
        if status in ("aborted", "tool_error"):
            self.mask = [0] * len(self.mask)
        return self

    def summary(self) -> dict:
        """What the rollout log keeps of it besides the per-token columns."""
        return {"status": self.status, "turns": self.num_turns, "tool_calls": self.tool_calls,
                "observation_tokens": self.observation_tokens, "observation_cut": self.observation_cut,
                "reward": self.reward, "info": self.info}


class Observations:
    """Observation content -> the ids appended after a model turn (see the module docstring)."""

    def __init__(self, tokenizer, role: str, chat: bool):
        self.tok, self.chat = tokenizer, chat
        if chat:
            self.end_of_turn, self.head, self.tail = chat_parts(tokenizer, role)
            eos = tokenizer.eos_token_id
            self.eos_text = tokenizer.decode([eos]) if eos is not None else None

    def ids(self, content: str, ended_with_eos: bool, limit: int) -> tuple[list[int], int]:
        """(ids, content tokens cut): the content keeps its first `limit` tokens."""
        enc = lambda text: self.tok.encode(text, add_special_tokens=False)  # noqa: E731
        body = enc(content)
        cut = max(0, len(body) - limit)
        body = body[:limit]
        if not self.chat:
            return body, cut
        lead = self.end_of_turn
        if ended_with_eos and self.eos_text and lead.startswith(self.eos_text):
            lead = lead[len(self.eos_text):]  # the engine emitted the end-of-turn token itself
        return enc(lead + self.head) + body + enc(self.tail), cut


def chat_parts(tokenizer, role: str) -> tuple[str, str, str]:
    """(text after an assistant message's content, text before an observation's content, text after it
    up to the next generation prompt), read off the model's chat template. A template that renders
    earlier turns differently once a message follows cannot take observations as a suffix: an error."""
    u, a, o = "\x00user\x00", "\x00assistant\x00", "\x00observation\x00"
    base = [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    before = tokenizer.apply_chat_template(base, tokenize=False)
    full = tokenizer.apply_chat_template(base + [{"role": role, "content": o}], tokenize=False,
                                         add_generation_prompt=True)
    if not full.startswith(before) or o not in full[len(before):]:
        raise ValueError(f"the chat template of {getattr(tokenizer, 'name_or_path', '?')} re-renders earlier turns "
                         f"when a {role!r} message follows: observations cannot be appended as a suffix")
    head, tail = full[len(before):].split(o)
    return before[before.index(a) + len(a):], head, tail


class EpisodeRunner:
    """Runs episodes on one engine. request(ids, params) -> vLLM's final RequestOutput; tools: a ToolPool;
    versions(completion) -> the version of each token it sampled."""

    def __init__(self, agent, tokenizer, request, tools, versions):
        self.agent, self.tok, self.request, self.tools, self.versions = agent, tokenizer, request, tools, versions
        self.formats: dict = {}
        self.gateway = None  # the OpenAI endpoint, started by the first agent episode

    def observations(self, env, chat: bool) -> Observations:
        key = (env.role, chat)
        if key not in self.formats:
            self.formats[key] = Observations(self.tok, env.role, chat)
        return self.formats[key]

    async def run(self, env_name: str, row: dict, prompt_ids, seed: int, sample: int, sampling: dict,
                  max_tokens: int) -> Episode:
        """Sample `sample` of the group of `row` (seed: the group's) in environment `env_name`; sampling:
        SamplingParams keywords of every turn; max_tokens: all the response's tokens."""
        from rlsys.agents.env import ENVS
        from rlsys.agents.gateway import AgentEnv

        ep, seed = Episode(), episode_seed(seed, sample, 0)
        if isinstance(ENVS[env_name], AgentEnv):
            body = self._agent(ep, ENVS[env_name], row, seed, sampling, max_tokens)
        else:
            body = self._turns(ep, env_name, row, list(map(int, prompt_ids)), seed, sampling, max_tokens)
        try:
            await asyncio.wait_for(body, self.agent.episode_timeout_s)
        except asyncio.TimeoutError:
            ep.end("aborted", f"rollout.agent.episode_timeout_s={self.agent.episode_timeout_s:g} s passed")
        if ep.reward is None and row.get("data_source") == env_name:  # it owns its data_source's reward
            ep.reward = 0.0
        return ep

    async def turn(self, ep: Episode, prompt: list[int], sampling: dict, max_tokens: int, seed: int, stop: list[str]):
        """One model turn: a request of the prompt and every id of the episode so far, its sampled ids appended
        (mask 1); vLLM's completion. Stop strings stay in the turn's tokens (they were sampled)."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(**sampling, n=1, max_tokens=max_tokens, logprobs=0, seed=seed, stop=stop,
                                include_stop_str_in_output=True, skip_special_tokens=True,
                                output_kind=RequestOutputKind.FINAL_ONLY)
        ep.requests.append(len(ep.ids))
        c = (await self.request(prompt + ep.ids, params)).outputs[0]
        self.append(ep, list(c.token_ids), c, ep.num_turns - 1)
        return c

    def append(self, ep: Episode, ids: list[int], completion, turn: int) -> None:
        """ids after the episode's: sampled by the engine (completion: vLLM's, mask 1, with their log-probs and
        versions) or an observation (completion None: mask 0, the version of the turn it answers)."""
        ep.ids += ids
        ep.turns += [turn] * len(ids)
        if completion is not None:
            ep.logprobs += [lp[t].logprob for lp, t in zip(completion.logprobs, ids)]
            ep.mask += [1] * len(ids)
            ep.versions += self.versions(completion, len(ids)).tolist()
        else:
            ep.logprobs += [0.0] * len(ids)
            ep.mask += [0] * len(ids)
            ep.versions += [ep.versions[-1] if ep.versions else 0] * len(ids)
            ep.observation_tokens += len(ids)

    async def _agent(self, ep: Episode, env, row: dict, seed: int, sampling: dict, max_tokens: int) -> None:
        """An agent function drives the episode through this engine's OpenAI endpoint (rlsys/agents/gateway.py)."""
        from rlsys.agents.gateway import Gateway, Recorder

        if self.gateway is None:  # the first agent episode starts it; those arriving meanwhile wait for it
            self.gateway = Gateway()
            self.gateway.started = asyncio.ensure_future(self.gateway.start())
        await asyncio.shield(self.gateway.started)
        rec = Recorder(ep, self, seed, sampling, max_tokens)
        key, client = self.gateway.client(rec)
        try:
            reward = await env.fn(client, row)
            if not ep.ended and not ep.requests:
                ep.end("tool_error", "the agent returned without a call")
            elif not ep.ended:
                ep.reward = None if reward is None else float(reward)
                ep.end("completed" if ep.finish_reason == "stop" else "truncated")
        except Exception as e:  # a call the gateway refused ended the episode already; else the agent failed
            if not ep.ended:
                cause = f" (from {type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ else ""
                ep.end("tool_error", f"the agent raised {type(e).__name__}: {e}{cause}"[:2000])
        finally:  # also when the episode's timeout cancels it: its ids belong to this prompt
            ep.prompt, ep.tool_calls = rec.prompt, max(0, ep.num_turns - 1)
            self.gateway.open.pop(key, None)
            await client.close()

    async def _turns(self, ep: Episode, env_name: str, row: dict, prompt: list[int], seed: int, sampling: dict,
                     max_tokens: int) -> None:
        """The turns, appended to `ep` as they come (a timeout keeps what was appended); turn k's seed: seed + k."""
        from rlsys.agents.env import ENVS, Environment
        from rlsys.agents.tools import ToolError

        ag, env = self.agent, ENVS[env_name]
        fmt = self.observations(env, bool(row.get("chat")))
        try:  # the base class's reset needs no round trip
            state = {} if type(env).reset is Environment.reset else \
                await self.tools.call(env_name, "reset", (row,), ag.tool_timeout_s)
        except ToolError as e:
            ep.end("tool_error", str(e))
            return
        for turn in range(ag.max_turns):
            room = max_tokens - len(ep.ids)
            c = await self.turn(ep, prompt, sampling, min(room, ag.max_turn_tokens or room), seed + turn, list(env.stop))
            ids = list(c.token_ids)
            try:
                step = await self.tools.call(env_name, "step", (state, self.tok.decode(ids, skip_special_tokens=True)),
                                             ag.tool_timeout_s)
            except ToolError as e:
                ep.end("tool_error", str(e))
                return
            state, ep.tool_calls = step.state, ep.tool_calls + step.tool_calls
            if step.info:
                ep.info.setdefault("steps", []).append(step.info)
            if step.done or step.observation is None:
                ep.reward = step.reward
                ep.end("completed" if c.finish_reason != "length" else "truncated",
                       None if c.finish_reason != "length" else f"turn {turn} reached its token cap")
                return
            if c.finish_reason == "length":
                ep.end("truncated", f"turn {turn} reached its token cap")
                return
            if ep.tool_calls > ag.max_tool_calls:
                ep.end("truncated", f"rollout.agent.max_tool_calls={ag.max_tool_calls}")
                return
            if turn + 1 >= ag.max_turns:
                ep.end("truncated", f"rollout.agent.max_turns={ag.max_turns}")
                return
            eos = c.finish_reason == "stop" and c.stop_reason is None  # ended by the EOS token, not a stop string
            obs, cut = fmt.ids(step.observation, eos, ag.max_observation_tokens)
            if len(ep.ids) + len(obs) >= max_tokens:  # no room left for a turn after it
                ep.end("truncated", "rollout.max_new_tokens (response and observations together)")
                return
            self.append(ep, obs, None, turn)
            ep.observation_cut += int(cut > 0 or "observation_chars" in step.info)


def episode_arrays(episodes: list[Episode]) -> dict:
    """The per-sample columns of a group's episodes (rlsys/rollout/worker.EngineOutput)."""
    return {"response_token_ids": [np.asarray(e.ids, np.int64) for e in episodes],
            "behaviour_logprobs": [np.asarray(e.logprobs, np.float32) for e in episodes],
            "token_mask": [np.asarray(e.mask, np.int8) for e in episodes],
            "turn_index": [np.asarray(e.turns, np.int16) for e in episodes],
            "token_versions": [np.asarray(e.versions, np.int64) for e in episodes],
            "finish_reason": [e.finish_reason for e in episodes],
            "episodes": [e.summary() for e in episodes],
            "prompt_token_ids": [None if e.prompt is None else np.asarray(e.prompt, np.int64) for e in episodes]}
