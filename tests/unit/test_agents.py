"""Episodes (rlsys/agents/) without an engine: a scripted engine answers each turn, the environments of
tests/agent_envs.py run in real tool processes. Budgets, statuses, masks, the append-only rule, tool
faults (a hang, a raise, a 100 MB output) and the chat suffix."""

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from rlsys.agents.episode import EpisodeRunner, Observations, chat_parts
from rlsys.agents.modules import load_env_modules
from rlsys.agents.tools import ToolPool
from rlsys.config import AgentConfig
from rlsys.models.tiny import build_char_tokenizer

ENVS_FILE = str(Path(__file__).parent.parent / "agent_envs.py")
TOK = build_char_tokenizer()
PROMPT = TOK.encode("12*34=", add_special_tokens=False)
TURN = TOK.encode("hello", add_special_tokens=False) + [TOK.eos_token_id]  # what the scripted engine says each turn


@dataclass
class Logprob:
    logprob: float


@dataclass
class Completion:
    token_ids: list
    logprobs: list
    finish_reason: str
    stop_reason: object = None


@dataclass
class Output:
    outputs: list


@dataclass
class ScriptedEngine:
    """Says TURN (cut to the turn's max_tokens); records each request's ids."""
    delay: float = 0.0
    requests: list = field(default_factory=list)

    async def __call__(self, ids, params):
        self.requests.append(list(ids))
        await asyncio.sleep(self.delay)
        out = TURN[:params.max_tokens]
        return Output([Completion(out, [{t: Logprob(-0.5)} for t in out], "stop" if out == TURN else "length")])


@pytest.fixture(scope="module")
def loop():
    load_env_modules([ENVS_FILE])  # stop strings and roles are read here; reset and step run in the tool processes
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def tools():
    pool = ToolPool([ENVS_FILE], workers=1, max_chars=32 * 8)
    yield pool
    pool.close()


def run(loop, tools, env: str, max_tokens: int = 200, engine=None, source: str = "test", **budgets):
    agent = AgentConfig(**{"max_observation_tokens": 64, **budgets})
    engine = engine or ScriptedEngine()
    runner = EpisodeRunner(agent, TOK, engine, tools, lambda c, k: np.full(k, 7))
    row = {"prompt": "12*34=", "ground_truth": "408", "data_source": source, "chat": False, "extra_info": None}
    ep = loop.run_until_complete(runner.run(env, row, PROMPT, seed=1, sample=0, sampling={"temperature": 1.0},
                                            max_tokens=max_tokens))
    return ep, engine


def test_turns_are_appended_verbatim_and_observations_masked(loop, tools):
    ep, engine = run(loop, tools, "test_chatty", max_turns=3)
    assert ep.status == "truncated" and ep.num_turns == 3 and "max_turns" in ep.info["end"]
    for k, start in enumerate(ep.requests):  # token-in: each turn's request is the episode so far, as it was
        assert engine.requests[k] == PROMPT + ep.ids[:start]
        assert ep.ids[start:start + len(TURN)] == TURN and ep.mask[start:start + len(TURN)] == [1] * len(TURN)
    obs = TOK.encode("You wrote 5 characters. Go on.", add_special_tokens=False)
    assert ep.ids[len(TURN):len(TURN) + len(obs)] == obs and set(ep.mask[len(TURN):len(TURN) + len(obs)]) == {0}
    assert sum(ep.mask) == 3 * len(TURN) and ep.observation_tokens == 2 * len(obs)
    assert ep.mask[-1] == 1  # an episode ends on a model turn
    assert [t for t, m in zip(ep.turns, ep.mask) if m] == [0] * 6 + [1] * 6 + [2] * 6
    assert all(lp == 0.0 for lp, m in zip(ep.logprobs, ep.mask) if not m)


@pytest.mark.parametrize("budgets, max_tokens, turns, reason", [
    ({"max_tool_calls": 1}, 200, 2, "max_tool_calls"),
    ({"max_turn_tokens": 3}, 200, 1, "token cap"),  # the first turn is cut: its finish reason is "length"
    ({}, 36, 1, "rollout.max_new_tokens"),  # 6 + 30 tokens leave no room for a turn: cut before the observation
    ({}, 40, 2, "turn 1 reached its token cap"),  # 6 + 30 + 4: the second turn gets what is left
])
def test_each_budget_truncates(loop, tools, budgets, max_tokens, turns, reason):
    ep, _ = run(loop, tools, "test_chatty", max_tokens=max_tokens, **budgets)
    assert ep.status == "truncated" and ep.finish_reason == "length" and reason in ep.info["end"]
    assert ep.num_turns == turns and len(ep.ids) <= max_tokens and ep.mask[-1] == 1


def test_an_environment_named_as_the_data_source_owns_its_reward(loop, tools):
    ep, _ = run(loop, tools, "test_chatty", max_turns=2)
    assert ep.reward is None  # the row's verifier will score it
    ep, _ = run(loop, tools, "test_chatty", max_turns=2, source="test_chatty")
    assert ep.status == "truncated" and ep.reward == 0.0  # cut by a budget: no verifier has its name


def test_long_observation_keeps_its_first_tokens(loop, tools):
    ep, _ = run(loop, tools, "test_chatty", max_turns=2, max_observation_tokens=5)
    assert ep.ids[len(TURN):len(TURN) + 5] == TOK.encode("You w", add_special_tokens=False)
    assert ep.mask == [1] * len(TURN) + [0] * 5 + [1] * len(TURN) and ep.observation_cut == 1


def test_environment_state_and_reward(loop, tools):
    ep, _ = run(loop, tools, "test_counter")  # counts its steps in a state it changes in place
    assert ep.status == "completed" and ep.num_turns == 3 and ep.reward == 3.0
    assert ep.info["steps"] == [{"truth": "408"}]
    assert TOK.decode([i for i, m in zip(ep.ids, ep.mask) if not m]) == "step 1step 2"


def test_tool_that_raises_ends_only_its_episode(loop, tools):
    ep, _ = run(loop, tools, "test_boom")
    assert ep.status == "tool_error" and "RuntimeError: the tool broke" in ep.info["end"]
    assert ep.ids == TURN and ep.mask == [0] * len(TURN)  # kept for the log, no gradient


def test_tool_that_hangs_is_killed_and_replaced(loop, tools):
    t0 = time.monotonic()
    ep, _ = run(loop, tools, "test_hang", tool_timeout_s=1.0)
    assert ep.status == "tool_error" and "tool_timeout_s" in ep.info["end"] and time.monotonic() - t0 < 10
    ep, _ = run(loop, tools, "test_counter")  # the pool serves on, with a fresh process
    assert ep.status == "completed"


def test_huge_tool_output_is_cut_in_the_tool_process(loop, tools):
    ep, _ = run(loop, tools, "test_flood", max_turns=2, max_observation_tokens=8)
    assert ep.status == "truncated" and ep.observation_cut == 1
    assert ep.ids[len(TURN):-len(TURN)] == TOK.encode("x" * 8, add_special_tokens=False)
    assert ep.info["steps"][0]["observation_chars"] == 100_000_000


def test_episode_timeout_aborts_and_keeps_tokens_without_gradient(loop, tools):
    ep, _ = run(loop, tools, "test_chatty", engine=ScriptedEngine(delay=0.4), episode_timeout_s=1.0)
    assert ep.status == "aborted" and 1 <= ep.num_turns <= 3 and ep.ids and not any(ep.mask)


CHATML = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<eos>\n{% endfor %}"
          "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def chat_tokenizer(template: str):
    tok = build_char_tokenizer()
    tok.chat_template = template
    return tok


def test_chat_observation_is_the_templates_suffix():
    tok = chat_tokenizer(CHATML)
    assert chat_parts(tok, "tool") == ("<eos>\n", "<|tool|>", "<eos>\n<|assistant|>")
    fmt = Observations(tok, "tool", chat=True)
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "tool", "content": "42"}]
    whole = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    prompt = tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    # the engine emitted "a" and its end-of-turn token; the suffix holds only what it did not emit
    ids, _ = fmt.ids("42", ended_with_eos=True, limit=64)
    assert prompt + "a<eos>" + tok.decode(ids) == whole and tok.decode(ids).startswith("\n<|tool|>")
    ids, _ = fmt.ids("42", ended_with_eos=False, limit=64)  # a stop string ended the turn: the template closes it
    assert tok.decode(ids).startswith("<eos>\n<|tool|>")


def test_chat_template_that_rewrites_earlier_turns_is_refused():
    drops_history = ("{% for m in messages %}{% if loop.last or m.role != 'assistant' %}<|{{ m.role }}|>{{ m.content }}"
                     "{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    with pytest.raises(ValueError, match="re-renders earlier turns"):
        chat_parts(chat_tokenizer(drops_history), "tool")


def episode_batch():
    """Two samples: one episode (sampled, observation, sampled) and a one-turn sample."""
    from tests.unit.test_data import make_batch

    b = make_batch([5, 3])
    b.token_mask = [np.array([1, 1, 0, 0, 1], np.int8), np.ones(3, np.int8)]
    b.behaviour_logprobs = [np.array([-0.5, -0.25, 0.0, 0.0, -1.0], np.float32), np.full(3, -0.5, np.float32)]
    b.ref_logprobs = [np.array([-0.25, -0.25, -7.0, -9.0, -0.5], np.float32), np.full(3, -0.5, np.float32)]
    b.episode = [{"status": "completed", "turns": 2, "tool_calls": 1}, {"status": "truncated", "turns": 1}]
    return b


def test_rollout_log_and_lengths_count_only_sampled_tokens():
    from rlsys.data.step_batch import BatchMeta

    b = episode_batch()
    assert b.sampled_lengths.tolist() == [3, 3] and BatchMeta.of(b).policy_tokens.tolist() == [3, 3]
    table = b.to_arrow()
    assert table.column("behaviour_logprobs").to_pylist()[0] == [-0.5, -0.25, None, None, -1.0]  # none where not sampled
    assert table.column("token_mask").to_pylist()[0] == [1, 1, 0, 0, 1]
    assert '"status": "completed"' in table.column("episode").to_pylist()[0]


def test_kl_in_reward_skips_observation_tokens():
    from rlsys.learner.advantages import kl_return_to_go

    b = episode_batch()
    # k1 = beh - ref on sampled tokens: -0.25, 0, (masked), (masked), -0.5; return-to-go from the end
    assert kl_return_to_go(b, 0).tolist() == pytest.approx([-0.75, -0.5, -0.5, -0.5, -0.5])


def test_unknown_env_column_names_the_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rlsys.data.dataset import DatasetError, load_prompts

    path = tmp_path / "p.parquet"
    rows = [{"prompt": "1+1=", "ground_truth": "2", "data_source": "arithmetic", "env": None},
            {"prompt": "2+2=", "ground_truth": "4", "data_source": "arithmetic", "env": "no_such_env"}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DatasetError, match=r"row 1: unknown env 'no_such_env'"):
        load_prompts(path, TOK, {"arithmetic"}, 64)
    data = load_prompts(path, TOK, {"arithmetic"}, 64, episodes=False)  # rollout.agent.enabled=false: one turn
    assert data.env is None and data.episode(1) is None
    rows[1]["env"] = "test_counter"
    pq.write_table(pa.Table.from_pylist(rows), path)
    data = load_prompts(path, TOK, {"arithmetic"}, 64)
    assert data.env == [None, "test_counter"] and data.episode(1)["row"]["ground_truth"] == "4"


def test_python_tool_runs_in_the_verifiers_sandbox(loop, tools):
    """The built-in code tool: the model's program runs sandboxed in the tool process; a runaway one is
    stopped by the sandbox's limit and reported as the observation, the episode goes on."""
    from rlsys.agents.python_tool import PythonTool

    run = lambda action: loop.run_until_complete(tools.call("python", "step", ({}, action), 30.0))  # noqa: E731
    assert run("<python>print(6 * 7)</python>").observation == "<out>42</out>"
    t0 = time.monotonic()
    step = run("<python>while True: pass</python>")
    assert step.observation.startswith("<out>timeout") and time.monotonic() - t0 < 20 and not step.info["tool_ok"]
    assert run("The answer is 42.").done and PythonTool.stop == ("</python>",)
