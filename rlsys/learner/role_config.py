"""What a learner rank reads from the run's config: the learner actors get this, not RLSysConfig."""

from __future__ import annotations

from dataclasses import dataclass

from rlsys.config import AlgorithmConfig, LearnerConfig, ModelConfig, RLSysConfig, RolloutConfig
from rlsys.learner.objective import needs


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
    cpus: float  # cluster.learner.cpus: CPUs of one rank's placement
    reference: bool = False  # hold the frozen initial policy, sharded like the policy (reference_in_learners)
    collective_timeout_s: float = 0.0  # the process group's timeout (0: torch's default); the controller's deadlines are shorter


def learner_role_config(cfg: RLSysConfig) -> LearnerRoleConfig:
    t, c = cfg.trainer, cfg.cluster
    return LearnerRoleConfig(cfg.model, cfg.learner, cfg.algorithm, cfg.rollout, t.seed, t.steps, t.max_staleness,
                             c.threads, c.learner.cpus, reference_in_learners(cfg), collective_timeout(cfg))


def collective_timeout(cfg: RLSysConfig) -> float:
    """A collective waits at most the learners' longest deadline (runtime/deadlines.py): the start-up one,
    or cluster.deadline_s.learner; gloo's 30 minutes and NCCL's 10 are longer. 0: torch's default."""
    from rlsys.runtime.deadlines import START_S

    c = cfg.cluster
    if c.deadline_scale <= 0:
        return 0.0
    return c.deadline_s.learner if c.deadline_s.learner > 0 else c.deadline_scale * START_S


def reference_in_learners(cfg: RLSysConfig) -> bool:
    """A term reads reference log-probs and the learner ranks compute them (cluster.reference_with_learners):
    after the batch is sampled, before its advantages, instead of a ReferenceServer while groups arrive."""
    return _learners_hold_reference(cfg) and "reference" in needs(cfg.algorithm)


def reference_on_server(cfg: RLSysConfig) -> bool:
    """A term reads reference log-probs and a ReferenceServer computes them, per group as it arrives."""
    return not _learners_hold_reference(cfg) and "reference" in needs(cfg.algorithm)


def _learners_hold_reference(cfg: RLSysConfig) -> bool:
    """With LoRA the reference is the learners' own base (adapters off): never a server's second copy."""
    return cfg.cluster.reference_with_learners or cfg.learner.lora.rank > 0
