"""Threads per role, and the reference server's packed, budgeted, threaded log-probs."""

import time

import numpy as np
import pytest
import torch

from rlsys.runtime import threads as T
from rlsys.config import LearnerConfig
from rlsys.learner import packing as P
from rlsys.learner.logprobs import install_logprob_head
from rlsys.models.tiny import build_char_tokenizer, build_tiny_model, save_checkpoint


def test_stage_threads(monkeypatch):
    monkeypatch.setattr(T, "node_cores", lambda: 16)
    assert T.placement_threads(0.25) == 1 and T.placement_threads(2.0) == 2 and T.placement_threads(3.5) == 3
    assert T.stage_threads("auto", 0.5, alone=False) == 1  # overlaps another stage: its own share only
    assert T.stage_threads("auto", 0.5, alone=True, peers_on_node=2) == 8  # two ranks share the idle node
    assert T.stage_threads("auto", 0.5, alone=True) == 16
    assert T.stage_threads("placement", 4.0, alone=True) == 4
    assert T.stage_threads("auto", 12.0, alone=True, peers_on_node=4) == 12  # never below its placement


def test_set_threads_and_core_use():
    before = torch.get_num_threads()
    try:
        assert T.set_threads(1) == before and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with T.CoreUse() as idle:
        time.sleep(0.2)
    assert idle.wall >= 0.2 and idle.cores < 0.5  # sleeping keeps no core busy


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    tok = build_char_tokenizer()
    return str(save_checkpoint(build_tiny_model(32, 2, 4, vocab_size=len(tok), seed=2), tok,
                               tmp_path_factory.mktemp("tiny")))


def test_reference_server_packed_chunks_in_order(tiny_path, monkeypatch):
    from rlsys.reference.server import ReferenceServer

    rng = np.random.default_rng(4)
    prompts = [rng.integers(3, 90, rng.integers(1, 20)) for _ in range(9)]
    responses = [rng.integers(3, 90, rng.integers(1, 20)) for _ in range(9)]
    before = torch.get_num_threads()
    monkeypatch.setattr(T, "node_cores", lambda: 2)
    try:
        server = ReferenceServer(tiny_path, "float32", 0.9, 0, micro_batch_size=4,
                                 learner=LearnerConfig(max_tokens_per_micro_batch=40), cpus=0.25, threads="auto")
        got = server.logprobs(prompts, responses)
        assert server.usage()["threads"] == 1  # during generation: its placement's share
        again = server.logprobs(prompts, responses, alone=True)
        assert server.usage()["threads"] == 2  # alone on the node: every core
    finally:
        torch.set_num_threads(before)
    # independent values: each sample alone through the plain padded path of an sdpa model
    model = install_logprob_head(
        __import__("transformers").AutoModelForCausalLM.from_pretrained(tiny_path, attn_implementation="sdpa")).eval()
    for p, r, g, a in zip(prompts, responses, got, again):
        with torch.no_grad():
            want = P.response_logprobs(model, P.padded_inputs([p], [r], 0), 0.9).logp[0].numpy()
        assert g.shape == (len(r),) and np.allclose(g, want, atol=1e-5) and np.allclose(a, g, atol=1e-5)
