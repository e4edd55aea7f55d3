"""Per-step metrics of the RL loop, under the names they are logged with (verl's where verl has the
quantity; docs/metrics.md lists every one and tests/unit/test_metric_names.py keeps it in step)."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rlsys.data.batch import RolloutBatch
from rlsys.data.step_batch import BatchMeta

if TYPE_CHECKING:  # annotations only: the sync and verify packages import torch and every verifier
    from rlsys.sync.result import SyncResult
    from rlsys.verify.details import VerifierDetails

# stage -> the metric of its time (verl's timing_s/* names)
STAGE_METRICS = {"generate": "timing_s/gen", "verify": "timing_s/reward", "reference": "timing_s/ref",
                 "train": "timing_s/update_actor", "sync": "timing_s/update_weights"}
STAGES = tuple(STAGE_METRICS)


class StepTimer:
    """Per stage, the time during which some of its work was running (the union of its intervals,
    timed from any thread). Stages overlap when streamed, so their sum can exceed the wall time."""

    def __init__(self):
        self.intervals: dict[str, list[tuple[float, float]]] = {}
        self.start = time.perf_counter()
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, t0, time.perf_counter())

    def add(self, stage: str, t0: float, t1: float) -> None:
        with self._lock:
            self.intervals.setdefault(stage, []).append((t0, t1))

    @property
    def seconds(self) -> dict[str, float]:
        with self._lock:
            return {k: union_length(v) for k, v in self.intervals.items()}

    def total(self) -> float:
        return time.perf_counter() - self.start


def union_length(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def step_metrics(step: int, version: int, batch, train: dict, sync: SyncResult, timer: StepTimer) -> dict:
    """The step's metrics from its batch (a RolloutBatch, or the metadata of one held by the rollout
    manager: rlsys/data/step_batch.py), the learners' stats (learner/worker.py), the sync and the timer;
    `step` is also kept unprefixed, as the row index of metrics.jsonl."""
    meta = batch if isinstance(batch, BatchMeta) else \
        BatchMeta.of(batch, {**verifier_stats(batch.verifier_details or []), **spread_stats(batch)})
    rl = np.ones(len(meta), bool) if meta.anchor is None else ~meta.anchor  # DPH-RL anchors are not the step's samples
    tokens = max(train["tokens"], 1.0)
    lengths, reward = meta.policy_tokens[rl], meta.reward[rl]  # episodes: tokens the policy sampled
    wall, seconds = timer.total(), timer.seconds
    m = {
        "step": step,
        "training/global_step": step,
        "training/policy_version": version,
        "critic/score/mean": float(reward.mean()),
        "critic/score/accuracy": float(meta.correct[rl].mean()),
        "response_length/mean": float(lengths.mean()),
        # responses that hit rollout.max_new_tokens
        "response_length/clip_ratio": float(meta.truncated[rl].mean()),
        "actor/pg_loss": train["actor/pg_loss"],
        # k3 to the reference when the step ran one, else to the behaviour policy (the engines)
        ("actor/kl_loss" if meta.has_ref else "actor/ppo_kl"): train["kl_sum"] / tokens,
        "actor/entropy": train["entropy_sum"] / tokens,
        "training/rollout_logprob_diff_mean": train["mismatch_sum"] / tokens,
        "training/rollout_logprob_diff_max": train["training/rollout_logprob_diff_max"],
        "actor/grad_norm": train["actor/grad_norm"],
        "actor/lr": train.get("actor/lr", 0.0),  # this step's (algorithm.optim.warmup_steps, .schedule)
        "perf/update_weights_gb": sync.bytes / 1e9,
        "perf/update_weights_gbps": sync.bytes / 1e9 / max(sync.seconds, 1e-9),
        # 1: the sender wrote the engines' weights itself (rollout.cpu_gemm=plain, rlsys/sync/direct_write.py)
        "perf/update_weights_by_sender": float(sync.by_sender),
        # the path taken: 1 = LoRA adapters only / LoRA merged into a copy (both 0: full weights)
        "perf/update_weights_adapter": float(sync.content == "adapter"),
        "perf/update_weights_merged": float(sync.content == "merged"),
        "timing_s/check_weights": sync.check_s,  # the probe after the push (in timing_s/update_weights)
        "timing_s/step": wall,
        "timing_s/stage_sum": sum(seconds.get(k, 0.0) for k in STAGES),  # > timing_s/step: stages overlapped
        "perf/throughput": float(lengths.sum()) / max(wall, 1e-9),
        "perf/gen_throughput": float(lengths.sum()) / max(seconds.get("generate", 0.0), 1e-9),
    }
    m.update({STAGE_METRICS[k]: seconds.get(k, 0.0) for k in STAGES})
    if sync.probe_gap is not None:  # mean |engine - learner| log-prob of the probe text (rlsys/sync/check.py)
        m["sync/probe_gap"] = sync.probe_gap
    if sync.probe_shift is not None:  # how far the step moved it: a missed sync would show a gap this size
        m["sync/probe_shift"] = sync.probe_shift
    m["perf/max_memory_gb"] = train.get("perf/max_memory_gb", 0.0)  # the fullest learner rank
    # what the learners hold, all ranks together: parameters (frozen ones included), the trainable ones,
    # their gradients (before zeroing) and the optimizer's state (learner.lora shrinks the last three)
    m.update({k: train[k] for k in ("perf/learner_params_gb", "perf/learner_trainable_gb", "perf/learner_grads_gb",
                                    "perf/learner_optimizer_gb") if k in train})
    m.update(meta.stats)  # spread_stats and verifier_stats, computed where the samples are
    # cores the learner ranks kept busy while training (process CPU time / wall time, all ranks)
    m["learner_cores"] = train.get("train_cpu_seconds", 0.0) / max(train.get("train_seconds", 0.0), 1e-9)
    return m


def spread_stats(batch: RolloutBatch) -> dict:
    """Max/min of rewards and response lengths, prompt length, advantage spread (verl's critic/*, *_length/*)."""
    lengths = batch.sampled_lengths
    m = {"critic/score/max": float(batch.reward.max()), "critic/score/min": float(batch.reward.min()),
         "response_length/max": float(lengths.max()), "response_length/min": float(lengths.min()),
         "prompt_length/mean": float(np.mean([len(p) for p in batch.prompt_token_ids]))}
    if batch.advantages is not None:  # over response tokens
        adv = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in batch.advantages] or [np.zeros(1)])
        m.update({"critic/advantages/mean": float(adv.mean()), "critic/advantages/max": float(adv.max()),
                  "critic/advantages/min": float(adv.min())})
    return m


def episode_stats(batch: RolloutBatch) -> dict:
    """Episodes (rlsys/agents/): how each ended, turns, tool calls and observations per sample; {} without."""
    eps = batch.episode
    if not eps:
        return {}
    status = np.array([e["status"] for e in eps])
    mean = lambda key: float(np.mean([e.get(key, 0) for e in eps]))  # noqa: E731
    used = np.array([e.get("tool_calls", 0) > 0 for e in eps])
    m = {"episode/completed": float((status == "completed").mean()), "episode/truncated": float((status == "truncated").mean()),
         "episode/aborted": float((status == "aborted").mean()), "episode/tool_error": float((status == "tool_error").mean()),
         "episode/turns_mean": mean("turns"), "episode/tool_calls_mean": mean("tool_calls"),
         "episode/observation_tokens_mean": mean("observation_tokens"),
         "episode/observation_cut": int(sum(e.get("observation_cut", 0) for e in eps)),
         "episode/tool_use_frac": float(used.mean())}
    if batch.reward is not None and used.any():
        m["episode/accuracy_with_tool"] = float(batch.correct[used].mean())
    if batch.reward is not None and (~used).any():
        m["episode/accuracy_without_tool"] = float(batch.correct[~used].mean())
    return m


def verifier_stats(details: list[VerifierDetails]) -> dict:
    """Verifier errors and timeouts (counts) and mean seconds per sample, from the reward details."""
    secs = [0.0 if d.seconds is None else d.seconds for d in details]
    return {"reward/verifier_errors": sum(1 for d in details if d.error),
            "reward/verifier_timeouts": sum(1 for d in details if d.timeout),
            "reward/seconds_per_sample": float(np.mean(secs)) if secs else 0.0}


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
