"""VerifierWorker: one actor of the verifier pool, scoring verifier.concurrency samples at a time.

Each sample runs in a scorer process (rlsys/verify/scorer.py) with a hard timeout; a crash, an
exception or a timeout gives reward 0 with a reason and an error, never a hang. Calls may arrive
concurrently (a threaded actor): they share the same scorer processes.
"""

from __future__ import annotations

import queue
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rlsys.config import VerifierConfig
from rlsys.verify.scorer import GRACE_S, ScorerProcess


class VerifierWorker:
    def __init__(self, cfg: VerifierConfig | None = None):
        from rlsys.verify import configure

        self.cfg = cfg or VerifierConfig()
        configure(self.cfg)
        self.idle: queue.Queue[ScorerProcess] = queue.Queue()
        scorers = [ScorerProcess(self.cfg) for _ in range(self.cfg.concurrency)]
        for s in scorers:  # started together, checked here: a broken verifier.modules fails at start
            s.wait_ready()
            self.idle.put(s)
        self.executor = ThreadPoolExecutor(self.cfg.concurrency, thread_name_prefix="verify")

    def ready(self) -> bool:
        return True

    def score(self, responses: list[str], ground_truths: list[str], sources: list[str]):
        results = list(self.executor.map(self._one, sources, responses, ground_truths))
        return np.array([r for r, _ in results], dtype=np.float32), [d for _, d in results]

    def _one(self, source: str, response: str, truth: str) -> tuple[float, dict]:
        scorer = self.idle.get()
        try:
            scorer.wait_ready()  # a replacement process may still be importing: not this sample's time
            t0 = time.perf_counter()
            result = scorer.score(source, response, truth)
            if result is None:  # out of time or dead: replace the process, report honestly
                scorer.close()
                scorer = ScorerProcess(self.cfg)
                limit = self.cfg.timeout_s + GRACE_S
                result = 0.0, {"reason": f"timeout: verifier '{source}' did not answer within {limit:g}s (killed)",
                               "error": "verifier timeout", "timeout": True}
            result[1]["seconds"] = round(time.perf_counter() - t0, 6)
            return result
        finally:
            self.idle.put(scorer)

    def shutdown(self) -> None:
        while not self.idle.empty():
            self.idle.get().close()
