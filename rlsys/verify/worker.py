"""VerifierWorker: one actor of the verifier pool. A crashing verifier gives reward 0 and an error."""

from __future__ import annotations

import time

import numpy as np

from rlsys.verify import VERIFIERS


class VerifierWorker:
    def score(self, responses: list[str], ground_truths: list[str], sources: list[str]):
        rewards = np.zeros(len(responses), dtype=np.float32)
        details = []
        for i, (resp, truth, src) in enumerate(zip(responses, ground_truths, sources)):
            t0 = time.perf_counter()
            try:
                rewards[i], d = VERIFIERS[src](resp, truth)
            except Exception as e:  # a verifier bug must not take the run down
                d = {"reason": "verifier error", "error": f"{type(e).__name__}: {e}"}
            d["seconds"] = round(time.perf_counter() - t0, 6)
            details.append(d)
        return rewards, details
