"""What a learner rank reads from the run's config: the learner actors get this, not RLSysConfig."""

from __future__ import annotations

from dataclasses import dataclass

from rlsys.config import AlgorithmConfig, LearnerConfig, ModelConfig, RLSysConfig, RolloutConfig


@dataclass(frozen=True)
class LearnerRoleConfig:
    model: ModelConfig  # dtype of the weights it loads
    learner: LearnerConfig  # micro-batching, packing, attention, FSDP mixed precision
    algorithm: AlgorithmConfig  # the objective and its optimizer
    rollout: RolloutConfig  # sampling temperature (log-probs of the sampled distribution), sync settings
    seed: int  # trainer.seed: the rank's torch seed is seed + rank
    total_steps: int  # trainer.steps: the lr schedule's horizon
    max_staleness: int  # trainer.max_staleness: async mode keeps a weight snapshot and corrects off-policy samples
    threads: str  # cluster.threads: auto | placement
    cpus: float  # cluster.learner_cpus: CPUs of one rank's placement


def learner_role_config(cfg: RLSysConfig) -> LearnerRoleConfig:
    t = cfg.trainer
    return LearnerRoleConfig(cfg.model, cfg.learner, cfg.algorithm, cfg.rollout, t.seed, t.steps, t.max_staleness,
                             cfg.cluster.threads, cfg.cluster.learner_cpus)
