"""Did every engine get the weights the learners sent? Checked after each push, on every sync path.

probe     (rollout.check_weights=probe or checksum: every sync; auto: as often as fits in 2% of the
          run's time, the first always) the log-probs of a fixed text under each engine
          (one prompt-logprob request: what the engine serves, kernels and adapters included)
          against the learners' log-probs of it under the weights just sent. A gap past PROBE_TOLERANCE
          fails the run, naming the engine, the version and how far it is from the previous version's
          log-probs (near them: the sync did not reach it). Costs one short prefill per engine and one
          forward of the learners per sync. It catches a missed sync only when the step moved the
          probe's log-probs by more than the tolerance: the metric sync/probe_shift says by how much.
checksum  (rollout.check_weights=checksum, and =auto for adapter syncs) sha256 of every tensor the
          sender packed against the engine's sha256 of what it holds after the sync: its adapter's
          tensors as vLLM registered them, or, for full weights, each tensor as the engine read it
          (and its own parameter where one holds the tensor whole: norms, embeddings). Exact; for
          full weights it costs a second pass over every byte on both sides (hence off by default).
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import torch

# A fixed text: plain characters (the tiny model's tokenizer has no others), some arithmetic, some words.
PROBE_TEXT = "Question: what is 17 * 23 + 41? Think step by step.\nAnswer: 17 * 23 = 391, and 391 + 41 = 432."
# Largest mean |engine - learner| log-prob over the probe's tokens for an engine serving the weights sent:
# the engines' own numerics. Measured (mean over the probe): fp32 on CPU ~1e-6 (tiny) and ~5e-6 (SmolLM2);
# bf16 on this CPU (emulated) ~0.01 (tiny). bf16 on GPU has never run here.
PROBE_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 0.05}


PROBE_BUDGET = 0.02  # check_weights=auto: the probes' share of the run's time since the first sync


class ProbeSchedule:
    """Which syncs are probed: all (probe, checksum), none (off), or with auto as many as fit in
    PROBE_BUDGET of the time since the first sync (every one when a step is long: the real model),
    the first always. Kept by the caller of the pushes (rlsys/learner/group.py)."""

    def __init__(self, mode: str):
        self.mode, self.spent, self.cost, self.start = mode, 0.0, 0.0, None

    def due(self) -> bool:
        if self.mode in ("probe", "checksum"):
            return True
        now = time.monotonic()
        self.start = self.start if self.start is not None else now
        return self.mode == "auto" and self.spent + self.cost <= PROBE_BUDGET * (now - self.start)

    def record(self, seconds: float) -> None:
        self.spent, self.cost = self.spent + seconds, seconds


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

    def ask(self, engines: list) -> list:
        """Start every engine's probe (they run while the learners compute theirs)."""
        return [e.probe_logprobs.remote(self.ids) for e in engines]

    def check(self, learner: np.ndarray, asked: list, version: int) -> tuple[float, float | None]:
        """Compare each engine's probe with the learners'. -> (the largest gap over the engines, how far the
        learners' own probe moved since the previous version: what a missed sync would show), or
        WeightSyncError. Gaps are mean |difference| over the probe's tokens."""
        import ray

        gap = lambda a, b: float(np.abs(np.asarray(a) - b).mean())  # noqa: E731
        served = ray.get(asked)
        previous, self.previous = self.previous, learner
        worst = 0.0
        for i, logp in enumerate(served):
            worst = max(worst, gap(logp, learner))
            if gap(logp, learner) > self.tolerance:
                old = "" if previous is None else f"; {gap(logp, previous):.3g} from the previous version's"
                raise WeightSyncError(f"engine {i} does not serve the weights of version {version}: its log-probs of a "
                                      f"probe text differ from the learners' by {gap(logp, learner):.3g} on average "
                                      f"(tolerance {self.tolerance:g}){old}")
        return worst, None if previous is None else gap(previous, learner)
