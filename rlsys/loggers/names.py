"""Metric names as verl logs them, so dashboards built for verl read rlsys runs.

The controller and the roles compute metrics under short internal names; `verl_names` renames
them once, where they leave the process (metrics.jsonl and every logger backend). A key missing
from VERL_NAMES keeps its own name, so a new metric is never dropped. docs/metrics.md is the table
for people; tests/unit/test_loggers.py checks that it lists exactly these names.
"""

from __future__ import annotations

# internal name -> logged name (verl's where verl has the quantity; same group prefix otherwise)
VERL_NAMES: dict[str, str] = {
    "step": "training/global_step",
    "policy_version": "training/policy_version",
    "reward_mean": "critic/score/mean",
    "reward_max": "critic/score/max",
    "reward_min": "critic/score/min",
    "accuracy": "critic/score/accuracy",
    "advantages_mean": "critic/advantages/mean",
    "advantages_max": "critic/advantages/max",
    "advantages_min": "critic/advantages/min",
    "response_length": "response_length/mean",
    "response_length_max": "response_length/max",
    "response_length_min": "response_length/min",
    "truncated_frac": "response_length/clip_ratio",
    "prompt_length": "prompt_length/mean",
    "loss": "actor/pg_loss",
    "clip_frac": "actor/pg_clipfrac",
    "entropy": "actor/entropy",
    "grad_norm": "actor/grad_norm",
    "lr": "actor/lr",
    "kl_ref": "actor/kl_loss",
    "kl_behaviour": "actor/ppo_kl",
    "lp_reg_tokens": "actor/lp_reg_tokens",
    "divergence": "actor/divergence",
    "value_loss": "critic/vf_loss",
    "logprob_mismatch": "training/rollout_logprob_diff_mean",
    "logprob_mismatch_max": "training/rollout_logprob_diff_max",
    "time_generate": "timing_s/gen",
    "time_verify": "timing_s/reward",
    "time_reference": "timing_s/ref",
    "time_train": "timing_s/update_actor",
    "time_sync": "timing_s/update_weights",
    "step_seconds": "timing_s/step",
    "stage_sum_seconds": "timing_s/stage_sum",
    "eval_seconds": "timing_s/testing",
    "tokens_per_s": "perf/throughput",
    "generate_tokens_per_s": "perf/gen_throughput",
    "learner_peak_memory_gb": "perf/max_memory_gb",
    "engine_peak_memory_gb": "perf/rollout_max_memory_gb",
    "sync_gb": "perf/update_weights_gb",
    "sync_gbps": "perf/update_weights_gbps",
    "sync_by_sender": "perf/update_weights_by_sender",
    "verifier_errors": "reward/verifier_errors",
    "verifier_timeouts": "reward/verifier_timeouts",
    "verify_sample_seconds": "reward/seconds_per_sample",
    "engine_restarts": "rollout/engine_restarts",
    "spec_acceptance_rate": "rollout/spec_acceptance_rate",
    "spec_tokens_per_verify": "rollout/spec_tokens_per_verify",
    "spec_draft_tokens": "rollout/spec_draft_tokens",
    "sampling_rounds": "rollout/sampling_rounds",
    "prompts_sampled": "rollout/prompts_sampled",
    "informative_frac": "rollout/informative_frac",
}
PASS_AT = "eval_pass@"  # eval_pass@k -> val/pass@k


def verl_name(key: str) -> str:
    if key.startswith(PASS_AT):
        return "val/pass@" + key[len(PASS_AT):]
    return VERL_NAMES.get(key, key)


def verl_names(m: dict) -> dict:
    """The step's metrics under their logged names; `step` stays as the row's index too."""
    out = {"step": m["step"]} if "step" in m else {}
    out.update((verl_name(k), v) for k, v in m.items())
    return out
