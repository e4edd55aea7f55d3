"""VerifierWorker: one actor of the verifier pool, scoring verifier.concurrency samples at a time.

Each sample runs in a scorer process (rlsys/verify/scorer.py) with a hard timeout; a crash, an
exception or a timeout gives reward 0 with a reason and an error, never a hang. Calls may arrive
concurrently (a threaded actor): they share the same scorer processes.
"""

from __future__ import annotations

import math
import queue
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rlsys.config import VerifierConfig
from rlsys.runtime.deadlines import ProbedActor
from rlsys.verify.details import VerifierDetails
from rlsys.verify.scorer import GRACE_S, ScorerProcess

CHUNK = 16  # samples sent to a scorer process at once (answers still come, and are timed, one by one)


class VerifierWorker(ProbedActor):
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

    def score(self, responses: list[str], ground_truths: list[str], sources: list[str],
              extra_infos: list[dict | None] | None = None):
        items = list(zip(sources, responses, ground_truths, extra_infos or [None] * len(responses)))
        size = max(1, min(CHUNK, math.ceil(len(items) / self.cfg.concurrency)))
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        results = [r for chunk in self.executor.map(self._chunk, chunks) for r in chunk]
        return np.array([r for r, _ in results], dtype=np.float32), [d for _, d in results]

    def _chunk(self, items: list[tuple]) -> list[tuple[float, VerifierDetails]]:
        """Score samples in order on one scorer process; a sample that times out (or kills the
        process) gets reward 0, the process is replaced and the rest go to the new one."""
        scorer, out = self.idle.get(), []
        try:
            while len(out) < len(items):
                rest = items[len(out):]
                scorer.submit(rest)  # waits for a replacement process to be ready: not the samples' time
                for source, *_ in rest:
                    result = scorer.next_result()
                    if isinstance(result, str):  # timeout or crash: replace the process, report honestly
                        code = scorer.close()
                        scorer = ScorerProcess(self.cfg)
                        out.append(self._failed(source, result, code))
                        break
                    out.append(result)
            return out
        finally:
            self.idle.put(scorer)

    def _failed(self, source: str, what: str, exit_code: int | None) -> tuple[float, VerifierDetails]:
        limit = self.cfg.timeout_s + GRACE_S
        if what == "timeout":
            why = f"timeout: verifier '{source}' did not answer within {limit:g}s (killed)"
            return 0.0, VerifierDetails(reason=why, error="verifier timeout", timeout=True, seconds=limit)
        return 0.0, VerifierDetails(reason=f"verifier '{source}' crashed", seconds=0.0,
                                    error=f"scorer process exited with code {exit_code} while scoring")

    def shutdown(self) -> None:
        while not self.idle.empty():
            self.idle.get().close()
