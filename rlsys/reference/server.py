"""ReferenceServer: the frozen initial policy (or a teacher); answers per-token log-probs."""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from rlsys.learner.logprobs import pack, token_logprobs, unpad_per_token
from rlsys.learner.worker import DTYPES


class ReferenceServer:
    def __init__(self, model_path: str, dtype: str, temperature: float, pad_id: int, micro_batch_size: int):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=DTYPES[dtype]).to(device).eval()
        self.device, self.temperature, self.pad_id, self.mbs = device, temperature, pad_id, micro_batch_size

    @torch.no_grad()
    def logprobs(self, prompt_ids: list[np.ndarray], response_ids: list[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for start in range(0, len(prompt_ids), self.mbs):
            ids, attn, mask = pack(prompt_ids[start:start + self.mbs], response_ids[start:start + self.mbs], self.pad_id)
            logp, _ = token_logprobs(self.model, ids.to(self.device), attn.to(self.device), self.temperature)
            out.extend(unpad_per_token(logp.cpu(), mask))
        return out
