"""ReferenceServer: a frozen policy answering per-token log-probs.

Serves the initial policy (the reference of the KL penalties) or, as a second instance, a
distillation teacher; `load` swaps the checkpoint without restarting the actor. It computes like
the learner: packed rows (learner.packed), the learner's attention implementation, micro-batches
of learner.max_tokens_per_micro_batch tokens (or learner.micro_batch_size samples), and torch
threads from its placement, or the node's cores for a call that runs alone (rlsys/runtime/threads.py).
"""

from __future__ import annotations

import numpy as np
import torch

from rlsys.config import LearnerConfig
from rlsys.learner.build import load_causal_lm
from rlsys.learner.microbatch import first_fit
from rlsys.learner.packing import model_inputs, response_logprobs
from rlsys.learner.logprobs import unpad_per_token
from rlsys.runtime.threads import CoreUse, set_threads, stage_threads


class ReferenceServer:
    def __init__(self, model_path: str, dtype: str, temperature: float, pad_id: int, micro_batch_size: int,
                 learner: LearnerConfig | None = None, cpus: float = 1.0, threads: str = "auto"):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype, self.temperature, self.pad_id, self.mbs = dtype, temperature, pad_id, micro_batch_size
        self.learner = learner or LearnerConfig(micro_batch_size=micro_batch_size)
        self.cpus, self.thread_mode = cpus, threads
        set_threads(stage_threads(threads, cpus, alone=False))
        self.last_call: dict = {}
        self.load(model_path)

    def ping(self) -> bool:
        """Liveness probe (rlsys/runtime/deadlines.py), answered in its own concurrency group."""
        return True

    def load(self, model_path: str) -> str:
        self.model = load_causal_lm(model_path, self.dtype, self.learner, self.device).eval()
        self.model_path = model_path
        return model_path

    def _chunks(self, lengths: np.ndarray) -> list[list[int]]:
        budget = self.learner.max_tokens_per_micro_batch
        if budget > 0:
            return first_fit(lengths, budget)
        return [list(range(s, min(s + self.mbs, len(lengths)))) for s in range(0, len(lengths), self.mbs)]

    @torch.no_grad()
    def logprobs(self, prompt_ids: list[np.ndarray], response_ids: list[np.ndarray],
                 alone: bool = False, model_path: str | None = None) -> list[np.ndarray]:
        """Per-response-token log-probs, in input order. alone: no other stage computes on this node
        now (the caller knows), so the call may use every core (cluster.threads=auto). model_path:
        the model the caller means, loaded first if this server holds another (a teacher swapped by
        reset_roles, then restarted by Ray with the path it was started with)."""
        if model_path is not None and model_path != self.model_path:
            self.load(model_path)
        set_threads(stage_threads(self.thread_mode, self.cpus, alone))
        lengths = np.array([len(p) + len(r) for p, r in zip(prompt_ids, response_ids)])
        out: list[np.ndarray | None] = [None] * len(prompt_ids)
        with CoreUse() as use:
            for idx in self._chunks(lengths):
                inputs = model_inputs([prompt_ids[i] for i in idx], [response_ids[i] for i in idx], self.pad_id,
                                      self.learner.packed).to(self.device)
                logp = response_logprobs(self.model, inputs, self.temperature).logp
                for i, v in zip(idx, unpad_per_token(logp.cpu(), inputs.mask.cpu())):
                    out[i] = v
        self.last_call = {"threads": torch.get_num_threads(), "seconds": use.wall, "cores": use.cores}
        return out  # type: ignore[return-value]

    def usage(self) -> dict:
        """Threads, wall seconds and cores kept busy (CPU time / wall) of the last logprobs call."""
        return self.last_call
