"""Agents written against the OpenAI API: each engine serves chat completions, and every call an agent
makes is recorded, token for token, against its episode (docs/agents.md, "Agents on the OpenAI API").

An agent is an async function `agent(client, row) -> reward | None` registered with @register_agent; it
gets an `openai.AsyncOpenAI` client whose base URL names its episode on this engine's endpoint, and talks
to the policy as to any chat model. For each call the endpoint renders the messages with the model's chat
template and matches the text against the episode so far: the new part (the tool or user messages since
the last reply, and the generation prompt) is tokenized alone and appended with mask 0; the earlier ids,
sampled or not, are never re-tokenized. The reply's ids are appended with mask 1, and its content is
their text, stop strings included (an agent that sends back exactly what it got keeps the prefix). A call
whose messages do not extend the episode (a reply edited, a message dropped) fails: the agent gets HTTP
400, and the episode ends aborted, with no gradient. The run's sampling settings apply (rollout.*): a
call's temperature and top_p are ignored, its max_tokens and stop are honoured within the budgets.
"""

from __future__ import annotations

import itertools
import time
from typing import Awaitable, Callable

from rlsys.agents.env import Environment, register_env

Agent = Callable[..., Awaitable[float | None]]  # async (client: openai.AsyncOpenAI, row: dict) -> reward | None


class AgentEnv(Environment):
    """A registered agent function, in the environment registry (a row's `env` names it)."""

    fn: Agent


def register_agent(name: str):
    """Decorator: the async function becomes the environment `name`, run on the engine with an OpenAI client."""
    def wrap(fn: Agent) -> Agent:
        register_env(name)(type(f"Agent_{name}", (AgentEnv,), {"fn": staticmethod(fn)}))
        return fn

    return wrap


class EpisodeEnded(RuntimeError):
    """A call the episode cannot take: a budget is spent, or the messages break the append-only rule."""


class Recorder:
    """One agent episode's tokens, call by call. episode: the Episode its tokens go into (prompt: the ids
    of the first call, before the first reply)."""

    def __init__(self, episode, runner, seed: int, sampling: dict, max_tokens: int):
        self.ep, self.runner, self.seed, self.sampling, self.max_tokens = episode, runner, seed, sampling, max_tokens
        self.prompt: list[int] | None = None
        self.text = ""  # the episode so far as text, in the template's terms

    async def complete(self, body: dict) -> dict:
        ag, tok, ep = self.runner.agent, self.runner.tok, self.ep
        text = tok.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
        if self.prompt is None:
            self.prompt = tok.encode(text, add_special_tokens=False)
        elif not text.startswith(self.text):
            at = next((i for i, (a, b) in enumerate(zip(text, self.text)) if a != b), min(len(text), len(self.text)))
            raise EpisodeEnded(f"the messages do not extend the episode (append-only): they differ at character {at} "
                               f"({self.text[at:at + 40]!r} was sent before, {text[at:at + 40]!r} now)", "aborted")
        else:
            obs = tok.encode(text[len(self.text):], add_special_tokens=False)
            if ep.num_turns >= ag.max_turns:
                raise EpisodeEnded(f"rollout.agent.max_turns={ag.max_turns} calls made", "truncated")
            if len(ep.ids) + len(obs) >= self.max_tokens:
                raise EpisodeEnded("rollout.max_new_tokens (replies and the messages between them)", "truncated")
            self.runner.append(ep, obs, None, ep.num_turns - 1)
        room = self.max_tokens - len(ep.ids)
        cap = min(room, ag.max_turn_tokens or room, int(body.get("max_tokens") or body.get("max_completion_tokens") or room))
        stop = body.get("stop") or []
        c = await self.runner.turn(ep, self.prompt, self.sampling, cap, self.seed + ep.num_turns,
                                   [stop] if isinstance(stop, str) else list(stop))
        ids = list(c.token_ids)
        self.text = text + tok.decode(ids)
        ep.finish_reason = "length" if c.finish_reason == "length" else "stop"
        content = tok.decode(ids, skip_special_tokens=True)
        return {"id": f"rlsys-{id(self)}-{ep.num_turns}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "policy"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": ep.finish_reason, "logprobs": None}],
                "usage": {"prompt_tokens": len(self.prompt) + len(ep.ids) - len(ids), "completion_tokens": len(ids),
                          "total_tokens": len(self.prompt) + len(ep.ids)}}


class Gateway:
    """This engine's OpenAI-compatible endpoint (aiohttp, on 127.0.0.1: agents run in the engine's process):
    POST /<episode>/v1/chat/completions."""

    def __init__(self):
        self.open: dict[str, Recorder] = {}
        self.ids = itertools.count()
        self.url = None

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/{episode}/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = "http://127.0.0.1:%d" % site._server.sockets[0].getsockname()[1]

    async def _chat(self, request):
        from aiohttp import web

        rec = self.open.get(request.match_info["episode"])
        if rec is None:
            return web.json_response({"error": {"message": "no such episode (it has ended)"}}, status=404)
        body = await request.json()
        if body.get("n", 1) != 1 or body.get("stream"):
            return web.json_response({"error": {"message": "one choice per call, not streamed (n=1, stream=false)"}},
                                     status=400)
        try:
            return web.json_response(await rec.complete(body))
        except EpisodeEnded as e:
            rec.ep.end(e.args[1], e.args[0])
            self.open.pop(request.match_info["episode"], None)  # later calls of this episode: 404
            return web.json_response({"error": {"message": e.args[0], "type": "episode_ended"}}, status=400)

    def client(self, rec: Recorder):
        """An AsyncOpenAI client for one episode (no retries: a failed call is the episode's end)."""
        import openai

        key = str(next(self.ids))
        self.open[key] = rec
        return key, openai.AsyncOpenAI(base_url=f"{self.url}/{key}/v1", api_key="rlsys", max_retries=0)

    async def close(self) -> None:
        if self.url is not None:
            await self._runner.cleanup()
