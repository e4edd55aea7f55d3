"""rlsys.seeds gives exactly the numbers the call sites computed before it existed: the same
settings must keep drawing the same samples (bitwise-equal trajectories)."""

import pytest

from rlsys import seeds


@pytest.mark.parametrize("trainer_seed,step", [(0, 1), (0, 30), (7, 1), (123, 999)])
def test_step_seed_is_the_old_formula(trainer_seed, step):
    assert seeds.step_seed(trainer_seed, step) == trainer_seed * 100_003 + step


def test_known_values():
    # literal numbers, so a changed constant cannot hide behind a changed formula in this test
    assert seeds.step_seed(0, 1) == 1
    assert seeds.step_seed(3, 5) == 300_014
    assert seeds.round_seed(300_014, 0) == 300_014 and seeds.round_seed(300_014, 2) == 315_852
    assert seeds.group_seed(300_014, 41) == 300_014_900_083
    assert seeds.anchor_seed(0) == 17 and seeds.anchor_seed(5) == 22
    assert seeds.engine_seed(5, 2) == 7 and seeds.rank_seed(5, 1) == 6
    assert seeds.held_out_seed(1234) == 1235


@pytest.mark.parametrize("base,part", [(0, 0), (1, 3), (300_014, 127), (10**9, 4095)])
def test_each_derivation_is_its_old_formula(base, part):
    assert seeds.round_seed(base, part) == base + 7919 * part
    assert seeds.group_seed(base, part) == base * 1_000_003 + part
    assert seeds.anchor_seed(base) == base + 17
    assert seeds.engine_seed(base, part) == base + part
    assert seeds.rank_seed(base, part) == base + part
    assert seeds.held_out_seed(base) == base + 1


def test_no_two_steps_rounds_or_prompts_share_a_group_seed():
    got = {seeds.group_seed(seeds.round_seed(seeds.step_seed(s, step), rnd), p)
           for s in range(2) for step in range(1, 6) for rnd in range(3) for p in range(50)}
    assert len(got) == 2 * 5 * 3 * 50
