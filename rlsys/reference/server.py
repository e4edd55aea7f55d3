"""ReferenceServer: a frozen policy answering per-token log-probs.

Serves the initial policy (the reference of the KL penalties) or, as a second instance, a
distillation teacher; `load` swaps the checkpoint without restarting the actor.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from rlsys.learner.logprobs import DTYPES, install_logprob_head, pack, token_logprobs, unpad_per_token


class ReferenceServer:
    def __init__(self, model_path: str, dtype: str, temperature: float, pad_id: int, micro_batch_size: int):
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype, self.temperature, self.pad_id, self.mbs = dtype, temperature, pad_id, micro_batch_size
        self.load(model_path)

    def load(self, model_path: str) -> str:
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=DTYPES[self.dtype])
        self.model = install_logprob_head(model).to(self.device).eval()
        self.model_path = model_path
        return model_path

    @torch.no_grad()
    def logprobs(self, prompt_ids: list[np.ndarray], response_ids: list[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for start in range(0, len(prompt_ids), self.mbs):
            ids, attn, mask = pack(prompt_ids[start:start + self.mbs], response_ids[start:start + self.mbs], self.pad_id)
            logp = token_logprobs(self.model, ids.to(self.device), attn.to(self.device), self.temperature,
                                  positions=mask.to(self.device)).logp
            out.extend(unpad_per_token(logp.cpu(), mask))
        return out
