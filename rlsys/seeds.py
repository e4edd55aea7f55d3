"""Every seed the system derives from trainer.seed (or task.seed), in one place.

Each function is one formula, kept exactly as it was when it lived at its call site: a run with the
same settings draws the same samples, so changing any of them changes every trajectory. The
multipliers are primes larger than any count they multiply past (steps, prompts, rounds), so no two
(step, round, prompt) combinations share a seed.
"""

from __future__ import annotations

STEP_STRIDE = 100_003  # > any trainer.steps: step seeds of different trainer.seed never meet
GROUP_STRIDE = 1_000_003  # > any dataset size: group seeds of different requests never meet
ROUND_STRIDE = 7919  # dynamic sampling: each refill round of a step samples afresh
ANCHOR_OFFSET = 17  # DPH-RL's anchor pool: its own prompt order and samples, apart from step seeds


def step_seed(trainer_seed: int, step: int) -> int:
    """The seed of RL step `step`'s generation request."""
    return trainer_seed * STEP_STRIDE + step


def round_seed(request_seed: int, round_index: int) -> int:
    """Round `round_index` of one step's dynamic sampling (round 0 is the step's own seed)."""
    return request_seed + ROUND_STRIDE * round_index


def group_seed(request_seed: int, prompt_index: int) -> int:
    """The sampling seed of one prompt's group within a generation request (it also names the group)."""
    return request_seed * GROUP_STRIDE + prompt_index


def anchor_seed(trainer_seed: int) -> int:
    """DPH-RL: the anchor pool's prompt permutation and its generation request."""
    return trainer_seed + ANCHOR_OFFSET


def engine_seed(trainer_seed: int, engine_index: int) -> int:
    """vLLM's engine-level seed of rollout engine `engine_index`."""
    return trainer_seed + engine_index


def rank_seed(trainer_seed: int, rank: int) -> int:
    """torch's seed in learner rank `rank`."""
    return trainer_seed + rank


def held_out_seed(task_seed: int) -> int:
    """The built-in tasks' held-out split (the training split uses task.seed itself)."""
    return task_seed + 1
