"""The learner group: W LearnerWorker actors forming one torch.distributed (FSDP2) group."""

from __future__ import annotations

import math

import numpy as np

from rlsys.data.batch import RolloutBatch, split_balanced
from rlsys.learner.objectives import Denominators

SUMMED = ("loss", "tokens", "entropy_sum", "kl_sum", "mismatch_sum", "clipped_tokens")


class LearnerGroup:
    def __init__(self, actors: list, cfg):
        import ray

        self.actors, self.cfg = actors, cfg
        addr, port = ray.get(actors[0].address.remote())
        ray.get([a.setup.remote(addr, port) for a in actors])

    def train(self, batch: RolloutBatch) -> dict:
        """Split the global batch across ranks by tokens; one optimizer step; summed stats."""
        import ray

        shards = split_balanced(batch, len(self.actors))
        keep = np.ones(len(batch), bool) if batch.loss_mask is None else batch.loss_mask
        denom = Denominators(tokens=max(1.0, float(batch.response_lengths[keep].sum())),
                             sequences=max(1.0, float(keep.sum())), max_len=float(self.cfg.rollout.max_new_tokens))
        num_micro = max(1, math.ceil(max(len(s) for s in shards) / self.cfg.learner.micro_batch_size))
        results = ray.get([a.train_step.remote(batch.select(s), denom, num_micro)
                           for a, s in zip(self.actors, shards)])
        stats = {k: sum(r.get(k, 0.0) for r in results) for k in SUMMED}
        stats["mismatch_max"] = max(r["mismatch_max"] for r in results)
        stats["grad_norm"] = results[0]["grad_norm"]
        return stats

    def push_weights(self, engines: list, version: int) -> dict:
        import ray

        return ray.get([a.push_weights.remote(engines, version) for a in self.actors])[0]

    def save(self, path: str) -> str:
        import ray

        return ray.get([a.save_checkpoint.remote(path) for a in self.actors])[0]

    def shutdown(self) -> None:
        import ray

        ray.get([a.shutdown.remote() for a in self.actors])
