"""LoRA on the learners (learner.lora): the adapter's shape and how its weights reach the engines."""

from __future__ import annotations

from dataclasses import dataclass, field

# Every linear of a Llama / Qwen2 decoder layer: what vLLM's LoRA serves and "LoRA without regret" trains.
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraConfig:
    rank: int = 0  # adapter rank r (0 = off: full fine-tuning); the base is frozen, the optimizer holds only adapters
    alpha: float = 32.0  # scale alpha / r on the adapter's output
    dropout: float = 0.0  # dropout on the adapter's input while training (it makes the learner's log-probs noisy: keep 0 for RL)
    target_modules: list[str] = field(default_factory=lambda: list(ALL_LINEAR))  # module names (last part) that get an adapter
    merge: bool = False  # sync: send merged weights (W + scale * B @ A, computed in the copy being sent) instead of the adapter


def check_lora(cfg, check) -> None:
    """learner.lora.* and the knobs it cannot run with (check(ok, key, msg) raises ConfigError naming the key)."""
    lo, r = cfg.learner.lora, cfg.rollout
    check(lo.rank >= 0, "learner.lora.rank", f"must be >= 0 (0 = off), got {lo.rank}")
    if lo.rank == 0:
        return
    check(lo.rank <= 512, "learner.lora.rank", f"must be <= 512 (vLLM's largest LoRA rank), got {lo.rank}")
    check(lo.alpha > 0, "learner.lora.alpha", f"must be > 0, got {lo.alpha}")
    check(0 <= lo.dropout < 1, "learner.lora.dropout", f"must be in [0, 1), got {lo.dropout}")
    check(len(lo.target_modules) > 0, "learner.lora.target_modules", "name at least one module, e.g. [q_proj, v_proj]")
    check(r.sync_backend == "object_store", "rollout.sync_backend",
          f"learner.lora sends adapters (or merged weights) through object_store; {r.sync_backend} is not wired for it")
    check(not r.sync_frozen, "rollout.sync_frozen", "with learner.lora the base is frozen and the engines load it from "
          "the checkpoint: it is never re-sent (set rollout.sync_frozen=false)")
    check(lo.merge or not cfg.trainer.in_flight_updates, "trainer.in_flight_updates",
          "an adapter is served under a new name per version, and requests paused mid-sync would keep the old one: "
          "set learner.lora.merge=true (merged weights change in place) or trainer.in_flight_updates=false")
    check(lo.merge or r.speculative in ("none", "ngram"), "rollout.speculative",
          f"vLLM serves LoRA adapters without draft models; use learner.lora.merge=true with speculative={r.speculative}")
    check(lo.merge or r.cpu_gemm == "packed", "rollout.cpu_gemm",
          "cpu_gemm=plain speeds up full-weight syncs; an adapter sync leaves the base untouched (use packed)")
