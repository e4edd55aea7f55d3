"""How the weights move per step: PPO mini-batches and epochs, off-policy (rollout) correction and async
staleness; rules that tie learner.*, trainer.* and algorithm.rollout_correction.* together."""

from __future__ import annotations


def check_updates(cfg, check) -> None:
    """PPO mini-batches and epochs, rollout correction and async staleness (check(ok, key, msg) raises
    ConfigError naming the key)."""
    a, lr_, t = cfg.algorithm, cfg.learner, cfg.trainer
    samples = t.prompts_per_step * cfg.rollout.n
    check(lr_.ppo_epochs >= 1, "learner.ppo_epochs", f"must be >= 1, got {lr_.ppo_epochs}")
    check(lr_.ppo_mini_batch_size == 0 or lr_.world_size <= lr_.ppo_mini_batch_size <= samples,
          "learner.ppo_mini_batch_size", f"must be 0 (whole batch) or in [learner.world_size={lr_.world_size}, "
          f"trainer.prompts_per_step x rollout.n={samples}], got {lr_.ppo_mini_batch_size}")
    check(t.max_staleness >= 0, "trainer.max_staleness", f"must be >= 0, got {t.max_staleness}")
    check(not t.in_flight_updates or t.max_staleness >= 1, "trainer.in_flight_updates",
          "weights change in flight only while the fleet generates ahead of the learners: set trainer.max_staleness >= 1")
    check(t.max_staleness == 0 or not cfg.cluster.colocate, "trainer.max_staleness",
          "async training (max_staleness >= 1) overlaps generation with training; it cannot run with "
          "cluster.colocate=true, where the engines sleep while the learners train")
    from rlsys.learner.losses import ROLLOUT_CORRECTIONS

    rc, key = a.rollout_correction, "algorithm.rollout_correction"
    modes = ("auto", *ROLLOUT_CORRECTIONS)
    check(rc.mode in modes, f"{key}.mode", f"unknown mode {rc.mode!r}; known: {', '.join(modes)}")
    check(rc.level in ("token", "sequence", "geometric"), f"{key}.level",
          f"must be token, sequence or geometric, got {rc.level!r}")
    check(rc.cap >= 1, f"{key}.cap", f"must be >= 1 (a truncation cap on the IS weight), got {rc.cap}")
    check(0 <= rc.low < 1 < rc.high, f"{key}.low", f"need {key}.low ({rc.low}) < 1 < {key}.high ({rc.high})")
    check(not rc.bypass or rc.mode in ("auto", "none"), f"{key}.mode",
          f"{key}.bypass=true makes logp_old the behaviour log-probs, so the IS weight is 1 "
          f"and {rc.mode} would do nothing: set {key}.mode=none (or bypass=false)")
