"""The verifier pool: M VerifierWorker actors; a batch is split evenly across them."""

from __future__ import annotations

import numpy as np

from rlsys.data.batch import RolloutBatch


class VerifierPool:
    def __init__(self, workers: list):
        self.workers = workers

    def score(self, batch: RolloutBatch) -> RolloutBatch:
        import ray

        shards = [s for s in np.array_split(np.arange(len(batch)), len(self.workers)) if len(s)]
        futures = [w.score.remote([batch.response_text[i] for i in s], [batch.ground_truth[i] for i in s],
                                  [batch.data_source[i] for i in s]) for w, s in zip(self.workers, shards)]
        rewards = np.zeros(len(batch), dtype=np.float32)
        details: list[dict] = [{}] * len(batch)
        for s, (r, d) in zip(shards, ray.get(futures)):
            rewards[s] = r
            for i, di in zip(s, d):
                details[i] = di
        batch.reward, batch.verifier_details = rewards, details
        return batch
