"""Per-step metrics of the RL loop (internal names; rlsys/loggers renames them to verl's and writes them)."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rlsys.data.batch import RolloutBatch

if TYPE_CHECKING:  # annotations only: the sync and verify packages import torch and every verifier
    from rlsys.sync.result import SyncResult
    from rlsys.verify.details import VerifierDetails

STAGES = ("generate", "verify", "reference", "train", "sync")


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


def step_metrics(step: int, version: int, batch: RolloutBatch, train: dict, sync: SyncResult, timer: StepTimer) -> dict:
    tokens = max(train["tokens"], 1.0)
    lengths = batch.response_lengths
    wall, seconds = timer.total(), timer.seconds
    m = {
        "step": step,
        "policy_version": version,
        "reward_mean": float(batch.reward.mean()),
        "accuracy": float(batch.correct.mean()),
        "response_length": float(lengths.mean()),
        "truncated_frac": float(np.mean([f == "length" for f in batch.finish_reason])),
        "loss": train["loss"],
        # k3 to the reference when the step ran one, else to the behaviour policy (the engines)
        ("kl_ref" if batch.ref_logprobs is not None else "kl_behaviour"): train["kl_sum"] / tokens,
        "entropy": train["entropy_sum"] / tokens,
        "logprob_mismatch": train["mismatch_sum"] / tokens,
        "logprob_mismatch_max": train["mismatch_max"],
        "grad_norm": train["grad_norm"],
        "lr": train.get("lr", 0.0),  # the learning rate of this step (algorithm.optim.warmup_steps, .schedule)
        "sync_gb": sync.bytes / 1e9,
        "sync_gbps": sync.bytes / 1e9 / max(sync.seconds, 1e-9),
        # 1: the sender wrote the engines' weights itself (rollout.cpu_gemm=plain, rlsys/sync/direct_write.py)
        "sync_by_sender": float(sync.by_sender),
        "step_seconds": wall,
        "stage_sum_seconds": sum(seconds.get(k, 0.0) for k in STAGES),  # > step_seconds: stages overlapped
        "tokens_per_s": float(lengths.sum()) / max(wall, 1e-9),
        "generate_tokens_per_s": float(lengths.sum()) / max(seconds.get("generate", 0.0), 1e-9),
    }
    m.update({f"time_{k}": seconds.get(k, 0.0) for k in STAGES})
    m["learner_peak_memory_gb"] = train.get("learner_peak_memory_gb", 0.0)
    m.update(spread_stats(batch))
    # cores the learner ranks kept busy while training (process CPU time / wall time, all ranks)
    m["learner_cores"] = train.get("train_cpu_seconds", 0.0) / max(train.get("train_seconds", 0.0), 1e-9)
    m.update(verifier_stats(batch.verifier_details or []))
    return m


def spread_stats(batch: RolloutBatch) -> dict:
    """Max/min of rewards and response lengths, prompt length, advantage spread (verl's critic/*, *_length/*)."""
    lengths = batch.response_lengths
    m = {"reward_max": float(batch.reward.max()), "reward_min": float(batch.reward.min()),
         "response_length_max": float(lengths.max()), "response_length_min": float(lengths.min()),
         "prompt_length": float(np.mean([len(p) for p in batch.prompt_token_ids]))}
    if batch.advantages is not None:
        adv = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in batch.advantages] or [np.zeros(1)])
        m.update(advantages_mean=float(adv.mean()), advantages_max=float(adv.max()), advantages_min=float(adv.min()))
    return m


def verifier_stats(details: list[VerifierDetails]) -> dict:
    """Verifier errors and timeouts (counts) and mean seconds per sample, from the reward details."""
    secs = [0.0 if d.seconds is None else d.seconds for d in details]
    return {"verifier_errors": sum(1 for d in details if d.error),
            "verifier_timeouts": sum(1 for d in details if d.timeout),
            "verify_sample_seconds": float(np.mean(secs)) if secs else 0.0}


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
