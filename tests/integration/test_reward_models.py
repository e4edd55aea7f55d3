"""Reward models and LLM judges as actors of the verifier pool, with real models on CPU: SmolLM2-135M-Instruct
as a generative judge (its own vLLM engine) and as a scalar reward model whose head is trained here on a
synthetic preference set. Batching, details, a gate that keeps wrong answers from the judge, a judge killed
mid-batch (restarted, its batch scored again) and a batch past its timeout (killed, lost: never a default)."""

import threading
import time

import numpy as np
import pytest

from rlsys.config import RLSysConfig
from rlsys.config.rewards import CombinedRewardConfig, RewardModelConfig
from rlsys.verify.model_pool import ModelPool
from rlsys.verify.verdicts import parse_verdict
from tests.preference import cached_preference_head, parity_pairs, real_model_path

QUESTIONS = [(12, 7), (17, 39), (40, 32), (2, 32), (14, 32), (27, 11), (36, 10), (18, 37), (39, 6), (16, 11)]


def _samples():
    """Right answers for even rows, wrong ones (off by 3) for odd rows."""
    prompts = [[{"role": "user", "content": f"What is {a} + {b}?"}] for a, b in QUESTIONS]
    answers = [a + b + (3 if i % 2 else 0) for i, (a, b) in enumerate(QUESTIONS)]
    return prompts, [f"{a} + {b} = {s}" for (a, b), s in zip(QUESTIONS, answers)], [str(a + b) for a, b in QUESTIONS]


@pytest.fixture(scope="module")
def head():
    return cached_preference_head(real_model_path())


@pytest.fixture(scope="module")
def pool(head):
    import ray

    from rlsys.loop.roles import start_verifiers
    from rlsys.runtime.cluster import place_roles, verifier_roles

    cfg = RLSysConfig()
    cfg.verifier.models = {
        "judge": RewardModelConfig(kind="judge", path=real_model_path(), batch_size=4, max_new_tokens=8,
                                   max_model_len=512),
        "parity": RewardModelConfig(kind="scalar", path=str(head["path"]), batch_size=8, max_model_len=256)}
    cfg.verifier.combine = {"gated": CombinedRewardConfig(terms={"arithmetic": 1.0, "judge": 0.5}, gate="arithmetic")}
    cfg.rollout.num_engines = 1
    ray.init(num_cpus=2, include_dashboard=False, address="local")
    try:
        yield start_verifiers(cfg, place_roles(cfg, roles=verifier_roles(cfg)))
    finally:
        ray.shutdown()


def test_the_trained_head_ranks_held_out_pairs_better_than_chance(head, pool):
    prompts, chosen, rejected = parity_pairs(48, seed=99)
    n = len(chosen)
    rewards, details = pool.score_texts(chosen + rejected, [""] * 2 * n, ["parity"] * 2 * n, None, prompts + prompts)
    accuracy = float(np.mean(rewards[:n] > rewards[n:]))
    assert accuracy >= 0.75, (accuracy, head)  # chance is 0.5
    d = details[0]
    assert d.extra["model"] == "parity" and d.extra["score"] == d.extra["raw"] == pytest.approx(rewards[0])
    # one sample scores the same alone as in a left-padded batch of 8 (96 samples: 12 chunks)
    alone, _ = pool.score_texts(chosen[:1], [""], ["parity"], None, prompts[:1])
    assert alone[0] == pytest.approx(rewards[0], rel=1e-5)


def test_judge_verdicts_are_what_its_text_says_in_batches(pool):
    prompts, responses, truths = _samples()
    pool.take_stats()
    rewards, details = pool.score_texts(responses, truths, ["judge"] * 10, None, prompts)
    stats = pool.take_stats()
    assert stats["verify/judge_samples"] == 10 and stats["verify/judge_tokens"] > 0
    for r, d in zip(rewards, details):
        text = d.extra["judge_text"]
        expected, parsed, _ = parse_verdict(text, "yes_no")
        assert d.extra["model"] == "judge" and text
        assert r == (0.0 if expected is None else expected), (r, text)
        assert (d.error == "unparseable verdict") == (expected is None) and (d.parsed or "") == parsed


def test_gate_keeps_wrong_answers_from_the_judge(pool):
    prompts, responses, truths = _samples()
    pool.take_stats()
    rewards, details = pool.score_texts(responses, truths, ["gated"] * 10, None, prompts)
    assert pool.take_stats()["verify/judge_samples"] == 5  # the 5 right answers only
    assert rewards[1::2].tolist() == [0.0] * 5
    assert all(r in (1.0, 1.5) for r in rewards[0::2])
    for r, d in zip(rewards[0::2], details[0::2]):
        assert r == 1.0 + 0.5 * d.extra["terms"]["judge"]["reward"]


def test_a_killed_judge_is_restarted_and_its_batch_scored_again(pool):
    import ray

    prompts, responses, truths = _samples()
    judge = pool.models["judge"]
    before, _ = judge.score(prompts, responses, truths)
    texts_before = [d.extra["judge_text"] for d in judge.score(prompts, responses, truths)[1]]
    pool.faults.take()
    out = {}
    worker = threading.Thread(target=lambda: out.update(result=judge.score(prompts * 3, responses * 3, truths * 3)))
    worker.start()
    time.sleep(1.0)  # 30 samples in chunks of 4 on one engine: well inside the call
    ray.kill(judge.workers[0], no_restart=False)
    worker.join(timeout=600)
    rewards, details = out["result"]
    assert pool.faults.take().get("faults/reward_model_deaths") == 1
    assert np.isfinite(rewards).all() and not any(d.lost for d in details)
    # the restarted engine answers as the first did (greedy): re-scored, not defaulted
    assert [d.extra["judge_text"] for d in details[:10]] == texts_before
    assert rewards[:10].tolist() == before.tolist()


def test_a_batch_past_its_timeout_is_lost_never_defaulted(pool):
    prompts, responses, truths = _samples()
    rm = pool.models["parity"]
    tight = ModelPool("parity", RewardModelConfig(kind="scalar", path="-", batch_size=10, timeout_s=0.01),
                      rm.workers, pool.faults)
    pool.faults.take()
    rewards, details = tight.score(prompts, responses, truths)
    assert np.isnan(rewards).all() and all(d.lost and "lost" in d.reason for d in details)
    faults = pool.faults.take()
    assert faults["faults/hangs_reward_model"] == 3 and faults["faults/reward_model_samples_lost"] == 10
    again, _ = rm.score(prompts, responses, truths)  # the restarted actor serves the normal pool
    assert np.isfinite(again).all()
