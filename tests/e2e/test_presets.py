"""Every preset of conf/algorithm/ trains 3 steps on the embedded default, composed from the conf
tree exactly as `rlsys train algorithm=<name>` would, on one shared set of Ray actors (one vLLM
engine): between presets the learners and the engine go back to the base weights."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
from hydra import compose, initialize_config_dir

from rlsys.config import register_configs, to_dataclass
from rlsys.config.validation import validate
from rlsys.loop.controller import prepare_data_and_model, run
from rlsys.loop.metrics import read_metrics
from rlsys.loop.roles import reset_roles, start_roles
from rlsys.loop.pipeline import SamplingError
from rlsys.train import CONF_DIR

STEPS = 3
DISTILL = ("opd", "g_opd", "kdrl")
PRESETS = ["grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "ppo", "reinforce",
           "psr", "nsr", "w_reinforce", "dph_rl", "lp_reg", *DISTILL]
register_configs()


def preset_cfg(name: str, run_dir, *extra: str):
    with initialize_config_dir(CONF_DIR, version_base=None):
        c = compose("config", overrides=[f"algorithm={name}", f"run_dir={run_dir}", f"trainer.steps={STEPS}",
                                         "trainer.prompts_per_step=16", "eval.before_after_samples=0", "cluster.num_cpus=4",
                                         "algorithm.divergence.anchor_samples=32", "algorithm.divergence.anchor_pool=64",
                                         "algorithm.kl.metric=true", *extra])  # actor/kl_loss: did reset work?
    return validate(to_dataclass(c))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("presets")
    train, held_out, model_path, tok = prepare_data_and_model(preset_cfg("grpo", tmp / "prepare"))
    # Started with a teacher slot (the base model) so the distillation presets can swap theirs in.
    roles = start_roles(preset_cfg("opd", tmp / "start", f"algorithm.distill.teacher_path={model_path}"), model_path,
                        tok.pad_token_id)
    yield {"tmp": tmp, "train": train, "held_out": held_out, "roles": roles, "runs": {}}
    ray.shutdown()


def train_preset(shared, name):
    runs = shared["runs"]
    if name not in runs:
        extra = [f"algorithm.distill.teacher_path={train_preset(shared, 'grpo')[2]}/checkpoint"] if name in DISTILL else []
        if name == "grpo":  # also: pass@k on the held-out set every 3 steps, logged with the metrics
            extra = ["eval.every=3", "eval.n=4"]
        run_dir = shared["tmp"] / name
        cfg = preset_cfg(name, run_dir, *extra)
        reset_roles(cfg, shared["roles"])
        run(cfg, shared["roles"], shared["train"], shared["held_out"] if name == "grpo" else None)
        if name == "grpo":  # the teacher of the distillation presets: the base model after 3 GRPO steps
            shared["roles"].learners.save(str(run_dir / "checkpoint"))
        rollouts = [pq.read_table(p).to_pydict() for p in sorted((run_dir / "rollouts").glob("*.parquet"))]
        runs[name] = (read_metrics(run_dir / "metrics.jsonl"), rollouts, run_dir)
    return runs[name]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains(shared, name):
    rows, rollouts, _ = train_preset(shared, name)
    assert [r["training/policy_version"] for r in rows] == list(range(1, STEPS + 1))
    # reset really put the base weights back in learners and engine; with several updates per step (ppo)
    # the learner stats average over updates made after the first, so compare pi_old with the engine instead
    first = rows[0]["actor/kl_loss"] if rows[0]["actor/ppo_updates"] == 1 else rows[0]["rollout_corr/kl_k3"]
    assert first < 1e-6
    assert rows[-1]["actor/kl_loss"] > 1e-6  # and the objective moved the policy
    for r in rows:
        assert np.isfinite(r["actor/pg_loss"]) and r["actor/grad_norm"] > 0
        # the engine sampled with the learner's synced weights (several updates: pi_old, before the first one)
        assert (r["training/rollout_logprob_diff_mean"] < 1e-3) if r["actor/ppo_updates"] == 1 else (r["rollout_corr/kl_k3"] < 1e-6)
    assert len(rollouts) == STEPS


def test_dapo_keeps_full_batch_of_informative_groups(shared):
    rows, rollouts, _ = train_preset(shared, "dapo")
    for r, roll in zip(rows, rollouts):
        groups = np.array(roll["group_id"])
        correct = np.array(roll["reward"]) > 0
        assert len(np.unique(groups)) == 16  # refilled to trainer.prompts_per_step
        for g in np.unique(groups):
            assert 0 < correct[groups == g].sum() < 8
        assert r["rollout/prompts_sampled"] >= 16 and r["rollout/sampling_rounds"] >= 1


def test_psr_and_nsr_train_on_their_half_only(shared):
    for name, want_correct in (("psr", True), ("nsr", False)):
        _, rollouts, _ = train_preset(shared, name)
        for roll in rollouts:
            correct = np.array(roll["reward"]) > 0
            assert (np.array(roll["loss_mask"]) == (correct if want_correct else ~correct)).all()


def test_ppo_critic_learns_the_returns(shared):
    rows, rollouts, _ = train_preset(shared, "ppo")
    assert rows[0]["critic/vf_loss"] > rows[-1]["critic/vf_loss"] > 0
    assert all(r["actor/ppo_updates"] == 2 for r in rows)  # the preset's learner.ppo_epochs=2
    assert all(v is not None for v in rollouts[-1]["values"])


def test_dph_rl_divergence_starts_at_zero_and_grows(shared):
    rows, _, _ = train_preset(shared, "dph_rl")
    assert abs(rows[0].get("actor/divergence", 0.0)) < 1e-6  # pi_theta == pi_0 at step 1
    assert rows[-1]["actor/divergence"] > 1e-7


def test_opd_advantage_is_teacher_minus_student(shared):
    for name, lam in (("opd", 1.0), ("g_opd", 1.5)):
        _, rollouts, _ = train_preset(shared, name)
        roll = rollouts[-1]
        for adv, t, r, b in zip(roll["advantages"], roll["teacher_logprobs"], roll["ref_logprobs"],
                                roll["behaviour_logprobs"]):
            want = lam * (np.array(t) - np.array(r)) - (np.array(b) - np.array(r))
            assert np.allclose(adv, want, atol=1e-5)
        assert any(np.abs(a).max() > 1e-3 for a in roll["advantages"])  # the teacher differs from the student


def test_dapo_stops_with_a_clear_error_when_no_group_is_informative(shared):
    """Near-greedy sampling makes the G samples of a prompt identical: no group can carry signal."""
    cfg = preset_cfg("dapo", shared["tmp"] / "dapo_greedy", "rollout.temperature=0.001", "algorithm.sampling.max_rounds=2")
    reset_roles(cfg, shared["roles"])
    with pytest.raises(SamplingError, match=r"of trainer.prompts_per_step=16 groups after algorithm.sampling.max_rounds=2"):
        run(cfg, shared["roles"], shared["train"], None)


def test_pass_at_k_logged_during_training(shared):
    rows, _, _ = train_preset(shared, "grpo")
    assert not any(k.startswith("val/pass@") for k in rows[0])
    curve = [rows[-1][f"val/pass@{k}"] for k in (1, 2, 4)]
    assert 0 < curve[0] <= curve[1] <= curve[2] <= 1
