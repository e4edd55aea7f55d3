"""The verifier pool: M VerifierWorker actors; each call's samples go to the least-busy actors.

Thread-safe: several threads may call score() at once with small batches (streaming groups);
the pool counts samples in flight per actor and sends each chunk to the one with the fewest. A
dead actor's samples get reward 0 with an error (actors restart), so a caller never hangs.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from rlsys.data.batch import RolloutBatch


class VerifierPool:
    def __init__(self, workers: list):
        self.workers = workers
        self._in_flight = [0] * len(workers)
        self._lock = threading.Lock()

    def score(self, batch: RolloutBatch) -> RolloutBatch:
        batch.reward, batch.verifier_details = self.score_texts(batch.response_text, batch.ground_truth,
                                                                batch.data_source)
        return batch

    def score_texts(self, responses: list[str], truths: list[str], sources: list[str]):
        """(rewards float32 [n], details list of dicts) for parallel lists of samples."""
        import ray

        n = len(responses)
        rewards, details = np.zeros(n, dtype=np.float32), [{} for _ in range(n)]
        size = max(1, math.ceil(n / len(self.workers)))
        calls = []
        for start in range(0, n, size):
            s = slice(start, min(n, start + size))
            with self._lock:
                j = int(np.argmin(self._in_flight))
                self._in_flight[j] += s.stop - s.start
            calls.append((j, s, self.workers[j].score.remote(responses[s], truths[s], sources[s])))
        for j, s, ref in calls:
            try:
                rewards[s], details[s] = ray.get(ref)
            except Exception as e:  # actor died mid-call: these samples fail, the next call is served
                details[s] = [{"reason": "verifier actor failed", "error": f"{type(e).__name__}: {e}"[:500]}
                              for _ in range(s.stop - s.start)]
            finally:
                with self._lock:
                    self._in_flight[j] -= s.stop - s.start
        return rewards, details
