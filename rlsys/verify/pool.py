"""The verifier pool: M VerifierWorker actors; each call's samples go to the least-busy actors.

Thread-safe: several threads may call score() at once with small batches (streaming groups);
the pool counts samples in flight per actor and sends each chunk to the one with the fewest. A
chunk whose actor died mid-call is re-scored on the least-busy actor (the dead one restarts,
rlsys/runtime/faults.py); if every attempt dies, its samples get reward NaN and `lost` in their details,
never a made-up 0: training drops their groups, evaluation refuses them (require_scored).
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager

import numpy as np

from rlsys.data.batch import RolloutBatch
from rlsys.data.dataset import PromptDataset
from rlsys.config import VerifierConfig
from rlsys.runtime.deadlines import Deadlines
from rlsys.runtime.faults import ActorLost, FaultLog, call_with_retries
from rlsys.verify.scorer import GRACE_S
from rlsys.verify.details import VerifierDetails
from rlsys.verify.model_pool import ModelPool


def chat_of(data: PromptDataset, row: int) -> list[dict]:
    """A prompt row as chat messages (a text prompt is one user message), as reward models read it."""
    messages = None if data.messages is None else data.messages[row]
    return list(messages) if messages is not None else [{"role": "user", "content": data.prompts[row]}]


class VerifierLost(RuntimeError):
    """Samples no verifier actor could score (they died on every attempt)."""


def require_scored(batch: RolloutBatch, where: str) -> RolloutBatch:
    """The batch, if every sample has a real reward; else VerifierLost naming where and how many."""
    lost = int((~np.isfinite(batch.reward)).sum())
    if lost:
        raise VerifierLost(f"{where}: {lost} of {len(batch.reward)} samples could not be scored (their verifier actors "
                           f"died on every attempt); no reward is made up for them")
    return batch


class VerifierPool:
    def __init__(self, workers: list, faults: FaultLog | None = None, deadlines: Deadlines | None = None,
                 cfg: VerifierConfig | None = None, models: dict[str, ModelPool] | None = None):
        """deadlines: a worker stuck past one is killed and its samples re-scored (None: wait forever);
        cfg: the workers' verifier config (their sandbox limits bound a call's own worst case);
        models: the verifier.models entries' pools (rlsys/verify/model_pool.py)."""
        self.workers, self.faults, self.deadlines = workers, faults or FaultLog(), deadlines
        self.cfg = cfg or VerifierConfig()
        self.models = models or {}
        self._in_flight = [0] * len(workers)
        self._lock = threading.Lock()

    def score(self, batch: RolloutBatch, data: PromptDataset | None = None) -> RolloutBatch:
        """Rewards of the batch's samples; an episode whose environment gave a reward at its end keeps that
        one (Step.reward, rlsys/agents/env.py), the others are scored by the verifiers. data: the prompts'
        dataset (reward models read the prompt; rule verifiers do not need it)."""
        own = [i for i, e in enumerate(batch.episode or []) if e.get("reward") is not None]
        prompts = None if data is None or not self.models else [chat_of(data, int(i)) for i in batch.prompt_id]
        if not own:
            batch.reward, batch.verifier_details = self.score_texts(batch.response_text, batch.ground_truth,
                                                                    batch.data_source, batch.extra_info, prompts)
            return batch
        rest = np.setdiff1d(np.arange(len(batch)), own)
        reward, details = np.zeros(len(batch), np.float32), [None] * len(batch)
        for i in own:
            reward[i] = float(batch.episode[i]["reward"])
            details[i] = VerifierDetails(reason="environment reward", extra={"environment": True})
        if len(rest):
            pick = lambda col: None if col is None else [col[i] for i in rest]  # noqa: E731
            reward[rest], scored = self.score_texts(pick(batch.response_text), pick(batch.ground_truth),
                                                    pick(batch.data_source), pick(batch.extra_info), pick(prompts))
            for i, d in zip(rest, scored):
                details[i] = d
        batch.reward, batch.verifier_details = reward, details
        return batch

    def score_texts(self, responses: list[str], truths: list[str], sources: list[str],
                    extras: list[dict | None] | None = None, prompts: list[list[dict]] | None = None):
        """(rewards float32 [n], VerifierDetails per sample) for parallel lists of samples; NaN = lost.
        extras: each sample's extra_info (verl rows), for verifiers that take it; prompts: each sample's
        prompt as chat messages, for reward models. Combined sources (verifier.combine) score their gates
        first, then their other terms for the samples that passed (rlsys/verify/combine.py)."""
        from rlsys.verify.combine import combined, first_round, second_round

        combine, n = self.cfg.combine, len(responses)
        if not self.models and not combine:
            return self._rules(responses, truths, sources, extras)
        done: dict = {}
        for jobs in (first_round(sources, combine), None):
            jobs = second_round(sources, combine, done) if jobs is None else jobs
            self._run_terms(jobs, responses, truths, extras, prompts, done)
        results = [combined(s, i, combine, done) for i, s in enumerate(sources)]
        return np.array([r for r, _ in results], np.float32).reshape(n), [d for _, d in results]

    def _run_terms(self, jobs: dict[str, list[int]], responses, truths, extras, prompts, done: dict) -> None:
        """Score each (sample, verifier) job, rule verifiers in one call and every reward model at once."""
        from concurrent.futures import ThreadPoolExecutor

        pick = lambda col, idx: None if col is None else [col[i] for i in idx]  # noqa: E731
        rule = [(i, name) for name, idx in jobs.items() if name not in self.models for i in idx]
        calls = {name: idx for name, idx in jobs.items() if name in self.models}
        if calls and prompts is None:
            raise ValueError(f"verifier.models {sorted(calls)} score the prompt with the response, and this call has "
                             f"no prompts (score(batch, data) with the prompts' dataset)")
        with ThreadPoolExecutor(len(calls) + 1) as pool:
            futures = {name: pool.submit(self.models[name].score, pick(prompts, idx), pick(responses, idx),
                                         pick(truths, idx)) for name, idx in calls.items()}
            if rule:
                idx = [i for i, _ in rule]
                rewards, details = self._rules(pick(responses, idx), pick(truths, idx), [n for _, n in rule],
                                               pick(extras, idx))
                done.update({job: (float(r), d) for job, r, d in zip(rule, rewards, details)})
            for name, f in futures.items():
                rewards, details = f.result()
                done.update({(i, name): (float(r), d) for i, r, d in zip(calls[name], rewards, details)})

    @contextmanager
    def generating(self):
        """While the policy fleet generates: colocated reward models hold their chunks (and sleep on GPU)."""
        held = [p for p in self.models.values() if p.colocated]
        for p in held:
            p.hold()
        try:
            yield
        finally:
            for p in held:
                p.release()

    def take_stats(self) -> dict[str, float]:
        """Per reward model since the last take: samples, summed chunk seconds, tokens read and generated."""
        out = {}
        for name, p in self.models.items():
            s = p.take_stats()
            if s["samples"]:
                out.update({f"verify/{name}_samples": s["samples"], f"verify/{name}_seconds": s["seconds"],
                            f"verify/{name}_prompt_tokens": s["prompt_tokens"], f"verify/{name}_tokens": s["tokens"]})
        return out

    def _rules(self, responses: list[str], truths: list[str], sources: list[str],
               extras: list[dict | None] | None = None):
        """Rule verifiers (the registry's) on the verifier actors."""
        from concurrent.futures import ThreadPoolExecutor

        n = len(responses)
        rewards, details = np.zeros(n, dtype=np.float32), [VerifierDetails() for _ in range(n)]
        size = max(1, math.ceil(n / len(self.workers)))
        chunks = [slice(start, min(n, start + size)) for start in range(0, n, size)]
        with ThreadPoolExecutor(max(1, len(chunks))) as pool:  # chunks wait (and retry) independently
            for s, result in zip(chunks, pool.map(lambda s: self._score_chunk(responses[s], truths[s], sources[s],
                                                                              extras[s] if extras else None),
                                                  chunks)):
                rewards[s], details[s] = result
        return rewards, details

    def _score_chunk(self, responses, truths, sources, extras):
        k = len(responses)

        def submit(attempt: int):
            with self._lock:  # the least-busy actor; a restarted one is as good as any
                j = int(np.argmin(self._in_flight))
                self._in_flight[j] += k
                queued[0] = self._in_flight[j]  # this call's samples and those it shares the scorers with
            held.append(j)
            return self.workers[j], self.workers[j].score.remote(responses, truths, sources, extras)

        held: list[int] = []
        queued = [k]
        # Its own worst case: every sample it waits behind hits the sandbox limit, concurrency at a time.
        worst = lambda: math.ceil(queued[0] / self.cfg.concurrency) * (self.cfg.timeout_s + GRACE_S)  # noqa: E731
        try:
            return call_with_retries(submit, "verifier", self.faults, deadlines=self.deadlines, units=k,
                                     worst_case=worst)
        except ActorLost as e:
            self.faults.add("faults/verifier_samples_lost", k)
            lost = [VerifierDetails(reason="verifier actor lost", error=str(e), lost=True) for _ in range(k)]
            return np.full(k, np.nan, np.float32), lost
        finally:
            with self._lock:
                for j in held:
                    self._in_flight[j] -= k
