"""The learner group: W LearnerWorker actors forming one torch.distributed (FSDP2) group."""

from __future__ import annotations

import numpy as np

from rlsys.data.batch import RolloutBatch, split_balanced
from rlsys.learner.microbatch import micro_batch_count, sample_tokens
from rlsys.learner.objectives import Denominators
from rlsys.learner.objective import combine, reductions


class LearnerGroup:
    def __init__(self, actors: list, cfg):
        import ray

        self.actors, self.cfg = actors, cfg
        addr, port = ray.get(actors[0].address.remote())
        ray.get([a.setup.remote(addr, port) for a in actors])

    def reset(self, cfg) -> None:
        """Back to the base weights with the objective of `cfg` (fresh optimizer, critic if asked)."""
        import ray

        self.cfg = cfg
        ray.get([a.reset.remote(cfg) for a in self.actors])

    def _shards(self, batch: RolloutBatch) -> tuple[list[np.ndarray], int]:
        """Rank shards balanced by tokens, and the micro-batch count every rank runs (the most any needs)."""
        shards, lc = split_balanced(batch, len(self.actors)), self.cfg.learner
        lengths = sample_tokens(batch)
        return shards, max(micro_batch_count(lengths[s], lc.micro_batch_size, lc.max_tokens_per_micro_batch)
                           for s in shards)

    def values(self, batch: RolloutBatch) -> list[np.ndarray]:
        """The critic's per-token values for every sample, in batch order."""
        import ray

        shards, num_micro = self._shards(batch)
        parts = ray.get([a.values.remote(batch.select(s), num_micro) for a, s in zip(self.actors, shards)])
        out: list = [None] * len(batch)
        for shard, vals in zip(shards, parts):
            for i, v in zip(shard, vals):
                out[i] = v
        return out

    def train(self, batch: RolloutBatch, progress: float = 0.0) -> dict:
        """Split the global batch across ranks by tokens; one optimizer step; every rank's stats
        combined by their declared reduction (learner/spec.py)."""
        import ray

        shards, num_micro = self._shards(batch)
        anchor = np.zeros(len(batch), bool) if batch.anchor is None else batch.anchor
        keep = ~anchor if batch.loss_mask is None else batch.loss_mask & ~anchor
        lengths = batch.response_lengths
        denom = Denominators(tokens=max(1.0, float(lengths[keep].sum())), sequences=max(1.0, float(keep.sum())),
                             max_len=float(self.cfg.rollout.max_new_tokens),
                             anchor_tokens=max(1.0, float(lengths[anchor].sum())))
        results = ray.get([a.train_step.remote(batch.select(s), denom, num_micro, progress)
                           for a, s in zip(self.actors, shards)])
        reduce = reductions(self.cfg.algorithm)
        stats = {k: combine([r.get(k, 0.0) for r in results], how) for k, how in reduce.items()
                 if any(k in r for r in results)}
        stats["learner_peak_memory_gb"] = stats.pop("peak_memory_gb")  # the fullest rank
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
