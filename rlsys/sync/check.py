"""Did every engine get the weights the learners sent? Checked after each push, on every sync path.

probe     (always on unless rollout.check_weights=off) the log-probs of a fixed text under each engine
          (one prompt-logprob request: what the engine serves, kernels and adapters included)
          against the learners' log-probs of it under the weights just sent. A gap past PROBE_TOLERANCE
          fails the run, naming the engine, the version and how far it is from the previous version's
          log-probs (near them: the sync did not reach it). Costs one short prefill per engine and one
          forward of the learners per sync. It catches a missed sync only when the step moved the
          probe's log-probs by more than the tolerance (any step of a learning run does).
checksum  (rollout.check_weights=checksum, and =auto for adapter syncs) sha256 of every tensor the
          sender packed against the engine's sha256 of what it holds after the sync: its adapter's
          tensors as vLLM registered them, or, for full weights, each tensor as the engine read it
          (and its own parameter where one holds the tensor whole: norms, embeddings). Exact; for
          full weights it costs a second pass over every byte on both sides (hence off by default).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

# A fixed text: plain characters (the tiny model's tokenizer has no others), some arithmetic, some words.
PROBE_TEXT = "Question: what is 17 * 23 + 41? Think step by step.\nAnswer: 17 * 23 = 391, and 391 + 41 = 432."
# Largest |engine - learner| log-prob over the probe's tokens for an engine serving the weights sent:
# the engines' own numerics (fp32 on CPU: <= 1e-5 measured, tests/integration/test_real_model.py).
# bf16 is a guess from bf16's 8-bit mantissa and has never run (no GPU here).
PROBE_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 0.1}


class WeightSyncError(RuntimeError):
    """An engine does not serve the weights the learners sent; the message names the engine and version."""


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's bytes, its dtype and shape."""
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.detach().contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def compare_digests(sent: dict[str, str], served: dict[str, str] | None, engine: int, version: int) -> None:
    if served is None:
        raise WeightSyncError(f"engine {engine} returned no checksums for version {version}: its sync never finished")
    wrong = sorted(n for n in sent if served.get(n) != sent[n])
    if wrong:
        raise WeightSyncError(f"engine {engine} does not hold the weights of version {version}: {len(wrong)} of "
                              f"{len(sent)} tensors differ from what was sent (first: {', '.join(wrong[:3])})")


class ProbeCheck:
    """Held by a learner rank: the probe's token ids and the learners' log-probs of the version before."""

    def __init__(self, tokenizer, dtype: torch.dtype):
        self.ids = [int(t) for t in tokenizer(PROBE_TEXT)["input_ids"]]
        self.tolerance, self.previous = PROBE_TOLERANCE[dtype], None

    @torch.no_grad()
    def learner_logprobs(self, model, device) -> np.ndarray:
        """Log-prob of each probe token after the first (a collective under FSDP: every rank calls it)."""
        was_training = model.training
        model.eval()  # no dropout (a LoRA adapter's)
        ids = torch.tensor([self.ids], device=device)
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        model.train(was_training)
        return logp.gather(-1, ids[0, 1:, None])[:, 0].double().cpu().numpy()

    def check(self, learner: np.ndarray, engines: list, version: int) -> float:
        """Compare each engine's probe with the learners'; the largest gap, or WeightSyncError."""
        import ray

        served = ray.get([e.probe_logprobs.remote(self.ids) for e in engines])
        previous, self.previous = self.previous, learner
        worst = 0.0
        for i, logp in enumerate(served):
            gap = float(np.abs(np.asarray(logp) - learner).max())
            worst = max(worst, gap)
            if gap > self.tolerance:
                old = "" if previous is None else \
                    f"; {float(np.abs(np.asarray(logp) - previous).max()):.3g} from the previous version's"
                raise WeightSyncError(f"engine {i} does not serve the weights of version {version}: its log-probs of a "
                                      f"probe text differ from the learners' by {gap:.3g} (tolerance "
                                      f"{self.tolerance:g}){old}")
        return worst
