"""The rollout fleet: N RolloutWorker actors answering one step's prompts as RolloutBatch."""

from __future__ import annotations

import numpy as np

from rlsys.data.batch import RolloutBatch
from rlsys.data.dataset import PromptDataset


class RolloutFleet:
    def __init__(self, engines: list, cfg):
        self.engines, self.cfg = engines, cfg

    def generate(self, data: PromptDataset, prompt_idx: np.ndarray, seed: int, n: int | None = None,
                 temperature: float | None = None, top_p: float | None = None) -> RolloutBatch:
        """n samples for each prompt; a prompt's whole group goes to one engine (shared prefix cache).
        n, temperature and top_p default to the rollout config (evaluation overrides them)."""
        import ray

        r = self.cfg.rollout
        n = n or r.n
        temperature = r.temperature if temperature is None else temperature
        top_p = r.top_p if top_p is None else top_p
        shards = np.array_split(np.arange(len(prompt_idx)), len(self.engines))
        futures = []
        for engine, shard in zip(self.engines, shards):
            ids = [data.prompt_token_ids[prompt_idx[i]] for i in shard]
            seeds = [seed * 1_000_003 + int(prompt_idx[i]) for i in shard]  # reproducible per prompt
            futures.append(engine.generate.remote(ids, seeds, n, temperature, top_p, r.max_new_tokens))
        parts = []
        for shard, out in zip(shards, ray.get(futures)):
            if len(shard) == 0:
                continue
            rows = np.repeat(prompt_idx[shard], n)
            parts.append(RolloutBatch(
                prompt_id=rows, group_id=np.repeat(shard, n).astype(np.int64),
                sample_index=np.tile(np.arange(n), len(shard)).astype(np.int64),
                prompt_token_ids=[data.prompt_token_ids[i] for i in rows],
                response_token_ids=out["response_token_ids"], behaviour_logprobs=out["behaviour_logprobs"],
                policy_version=np.full(len(rows), out["policy_version"], dtype=np.int64),
                finish_reason=out["finish_reason"], response_text=out["response_text"],
                ground_truth=[data.ground_truth[i] for i in rows], data_source=[data.data_source[i] for i in rows]))
        return RolloutBatch.concat(parts)
