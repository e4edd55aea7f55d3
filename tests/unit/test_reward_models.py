"""Model-based rewards without Ray or models: the judge's verdicts, combined rewards routed through the real
VerifierPool (its actors replaced by in-process stand-ins), config refusals and the reward-model placement."""

import math

import numpy as np
import pytest

from rlsys.config import RLSysConfig
from rlsys.config.validation import validate
from rlsys.config.rewards import CombinedRewardConfig, RewardModelConfig
from rlsys.errors import ConfigError
from rlsys.verify.details import VerifierDetails
from rlsys.verify.pool import VerifierPool
from rlsys.verify.scorer import run_verifier
from rlsys.verify.verdicts import judge_messages, parse_verdict, scalar_reward


@pytest.mark.parametrize("text, reward", [
    ("Yes.", 1.0), ("yes, the answer is right", 1.0), ("No. 12 + 7 is 19, not 18.", 0.0), ("NO", 0.0),
    ("The answer is correct: yes", 1.0)])
def test_yes_no_verdicts(text, reward):
    assert parse_verdict(text, "yes_no")[0] == reward


@pytest.mark.parametrize("text, why", [
    ("I think it might be right.", "neither"), ("Yes and no: the sum is right, the units are not.", "both"),
    ("", "neither"), ("Nobody knows; yesterday it was", "neither")])
def test_unparseable_yes_no_is_none_with_a_reason(text, why):
    reward, _, reason = parse_verdict(text, "yes_no")
    assert reward is None and why in reason


@pytest.mark.parametrize("text, reward", [
    ("Score: 7", 6 / 9), ("score = 10. Great answer.", 1.0), ("I'd rate it 4/10.", 3 / 9), ("1", 0.0),
    ("Rating: **5**", 4 / 9), ("8 out of 10", 7 / 9)])
def test_score_verdicts_scale_to_unit_interval(text, reward):
    assert parse_verdict(text, "score", 1, 10)[0] == pytest.approx(reward)


@pytest.mark.parametrize("text", ["Score: 11", "Score: 0", "a fine answer", "It has 3 steps and 2 errors.",
                                  "12 + 7 = 19\n\nThe answer is 19.", "Half of it, 1/2, is right."])
def test_score_out_of_range_or_missing_is_none(text):
    assert parse_verdict(text, "score", 1, 10)[0] is None


def test_custom_pattern_reads_its_group():
    assert parse_verdict("Reasoning... Verdict: YES", "yes_no", pattern=r"Verdict:\s*(\w+)")[0] == 1.0
    assert parse_verdict("Reasoning... Verdict: maybe", "yes_no", pattern=r"Verdict:\s*(\w+)")[0] is None
    assert parse_verdict("no verdict line, yes", "yes_no", pattern=r"Verdict:\s*(\w+)")[0] is None
    assert parse_verdict("[[3]]", "score", 1, 5, pattern=r"\[\[(\d+)\]\]")[0] == 0.5


def test_judge_sees_the_sample_and_keeps_braces_in_it():
    chat = judge_messages("Q: {prompt}\nA: {response}\nRef: {ground_truth}", [{"role": "user", "content": "2+2?"}],
                          "def f(): return {1: 2}", "4")
    assert chat == [{"role": "user", "content": "Q: 2+2?\nA: def f(): return {1: 2}\nRef: 4"}]
    many = judge_messages("{prompt}|{response}", [{"role": "system", "content": "be brief"},
                                                  {"role": "user", "content": "hi"}], "hello", "")
    assert many[0]["content"] == "system: be brief\nuser: hi|hello"


def test_scalar_reward_is_a_sigmoid_or_raw():
    assert scalar_reward(0.0, "sigmoid") == 0.5
    assert scalar_reward(2.0, "sigmoid") == pytest.approx(1 / (1 + math.exp(-2)))
    assert scalar_reward(-800.0, "sigmoid") == 0.0 and scalar_reward(800.0, "sigmoid") == 1.0
    assert scalar_reward(-3.5, "raw") == -3.5


class _Judge:
    """A model pool that says yes to responses containing 'good' and records what it was asked."""
    colocated = False

    def __init__(self):
        self.asked = []

    def score(self, prompts, responses, truths):
        self.asked += list(responses)
        rewards = np.array([float("good" in r) for r in responses], np.float32)
        return rewards, [VerifierDetails(reason="judge", extra={"model": "judge"}) for _ in responses]


class _Lost(_Judge):
    def score(self, prompts, responses, truths):
        return np.full(len(responses), np.nan, np.float32), [VerifierDetails(reason="lost", lost=True) for _ in responses]


def _pool(judge, combine):
    cfg = RLSysConfig().verifier
    cfg.models = {"judge": RewardModelConfig(path="x")}
    cfg.combine = combine
    pool = VerifierPool([], cfg=cfg, models={"judge": judge})
    # the rule verifiers in this process instead of on actors (the routing around them is the real one)
    pool._rules = lambda responses, truths, sources, extras=None: _in_process(responses, truths, sources)
    return pool


def _in_process(responses, truths, sources):
    results = [run_verifier(s, r, t) for s, r, t in zip(sources, responses, truths)]
    return np.array([r for r, _ in results], np.float32), [d for _, d in results]


PROMPT = [{"role": "user", "content": "What is 2 + 2?"}]


def test_gate_then_weighted_terms_and_the_judge_only_sees_what_passed():
    judge = _Judge()
    pool = _pool(judge, {"arithmetic": CombinedRewardConfig(terms={"arithmetic": 0.5, "judge": 0.5}, gate="arithmetic")})
    responses = ["4, good", "4", "5, good", "no idea"]
    rewards, details = pool.score_texts(responses, ["4"] * 4, ["arithmetic"] * 4, None, [PROMPT] * 4)
    assert rewards.tolist() == [1.0, 0.5, 0.0, 0.0]
    assert judge.asked == ["4, good", "4"]  # wrong answers never reach the judge
    assert details[2].reason.startswith("gate arithmetic not passed") and "judge" not in details[2].extra["terms"]
    assert details[0].extra["terms"]["judge"]["reward"] == 1.0 and details[0].parsed == "4"


def test_ungated_sum_and_plain_sources_side_by_side():
    judge = _Judge()
    pool = _pool(judge, {"mixed": CombinedRewardConfig(terms={"arithmetic": 1.0, "judge": -0.25})})
    rewards, details = pool.score_texts(["4 good", "3 good", "fine", "4"], ["4", "4", "", "4"],
                                        ["mixed", "mixed", "judge", "arithmetic"], None, [PROMPT] * 4)
    assert rewards.tolist() == [0.75, -0.25, 0.0, 1.0]
    assert judge.asked == ["4 good", "3 good", "fine"]
    assert details[2].extra["model"] == "judge" and "terms" not in details[3].extra


def test_a_lost_term_makes_the_sample_lost_never_a_partial_sum():
    pool = _pool(_Lost(), {"mixed": CombinedRewardConfig(terms={"arithmetic": 1.0, "judge": 1.0})})
    rewards, details = pool.score_texts(["4", "4"], ["4", "4"], ["mixed", "arithmetic"], None, [PROMPT] * 2)
    assert math.isnan(rewards[0]) and details[0].lost and "judge" in details[0].reason
    assert rewards[1] == 1.0


def test_reward_models_need_the_prompts():
    pool = _pool(_Judge(), {})
    with pytest.raises(ValueError, match="no prompts"):
        pool.score_texts(["x"], [""], ["judge"])


def _cfg(**verifier):
    cfg = RLSysConfig()
    for k, v in verifier.items():
        setattr(cfg.verifier, k, v)
    return cfg


@pytest.mark.parametrize("verifier, key", [
    ({"models": {"judge": RewardModelConfig(path="")}}, "verifier.models.judge.path"),
    ({"models": {"math": RewardModelConfig(path="x")}}, "verifier.models.math"),
    ({"models": {"j": RewardModelConfig(path="x", template="{question} {response}")}}, "verifier.models.j.template"),
    ({"models": {"j": RewardModelConfig(path="x", template="rate {prompt}")}}, "verifier.models.j.template"),
    ({"models": {"j": RewardModelConfig(path="x", pattern="Verdict: yes")}}, "verifier.models.j.pattern"),
    ({"models": {"j": RewardModelConfig(path="x", kind="pairwise")}}, "verifier.models.j.kind"),
    ({"models": {"j": RewardModelConfig(path="x", placement="shared")}}, "verifier.models.j.placement"),
    ({"combine": {"mix": CombinedRewardConfig(terms={"math": 1.0, "jduge": 1.0})}}, "verifier.combine.mix.terms"),
    ({"combine": {"mix": CombinedRewardConfig(terms={})}}, "verifier.combine.mix.terms"),
])
def test_config_refusals_name_the_key(verifier, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        validate(_cfg(**verifier))


def test_placement_reserves_standalone_actors_and_colocated_gpu_shares():
    from rlsys.runtime.cluster import role_demands, verifier_roles

    cfg = _cfg(models={"j": RewardModelConfig(path="x", num_actors=2),
                       "rm": RewardModelConfig(path="x", kind="scalar", placement="colocated")})
    demands = {d.role: d for d in role_demands(cfg)}
    assert demands["reward_model"].bundles == [{"CPU": 0.25}] * 2
    assert demands["rollout"].bundles == [{"CPU": 0.5}]  # colocated on CPU: no GPU share to add
    assert verifier_roles(cfg) == ("verifier", "reward_model", "rollout")
    cfg.cluster.reward_model.gpus, cfg.cluster.rollout.gpus = 0.3, 0.6
    bundle = {d.role: d for d in role_demands(cfg)}["rollout"].bundles[0]
    assert bundle["CPU"] == 0.5 and bundle["GPU"] == pytest.approx(0.9)
    assert "reward_model" not in {d.role for d in role_demands(_cfg())}
