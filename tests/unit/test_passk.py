"""pass@k against brute-force enumeration of every k-subset of the n samples."""

from itertools import combinations

import numpy as np
import pytest

from rlsys.eval.passk import ks_up_to, paired_bootstrap, pass_at_k, pass_at_k_curve, per_problem_pass_at_k


def brute_force(n, c, k):
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_matches_enumeration_for_every_c_and_k(n):
    for c in range(n + 1):  # includes c = 0 and c = n
        for k in range(1, n + 1):  # includes k = n
            assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12), (n, c, k)


def test_edges_and_errors():
    assert pass_at_k(256, 0, 256) == 0.0 and pass_at_k(256, 256, 1) == 1.0 and pass_at_k(256, 1, 256) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="k=0"):
        pass_at_k(4, 1, 0)
    with pytest.raises(ValueError, match="c=5"):
        pass_at_k(4, 5, 1)


def test_curve_and_ks():
    assert ks_up_to(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256] and ks_up_to(6) == [1, 2, 4, 6]
    curve = pass_at_k_curve(np.array([4, 4]), np.array([0, 2]), [1, 2])
    assert curve == {1: pytest.approx(0.25), 2: pytest.approx((0 + 5 / 6) / 2)}


def test_per_problem_matrix_averages_to_the_curve():
    n, c, ks = np.array([8, 8, 8]), np.array([0, 3, 8]), [1, 2, 8]
    m = per_problem_pass_at_k(n, c, ks)
    assert m.shape == (3, 3) and m[1, 0] == pytest.approx(3 / 8) and list(m[:, 2]) == [0.0, 1.0, 1.0]
    assert dict(zip(ks, m.mean(0))) == pytest.approx(pass_at_k_curve(n, c, ks))


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(1)
    a = rng.uniform(size=(200, 2))
    same = paired_bootstrap(a, a)
    assert np.all(same == 0)  # identical methods: no difference on any resample
    shifted = paired_bootstrap(a + 0.05, a)
    assert shifted == pytest.approx(np.full((2, 2), 0.05))  # a constant per-problem gain is certain
    noisy = paired_bootstrap(a, rng.permuted(a, axis=0))  # unpaired noise: the interval straddles 0
    assert np.all(noisy[0] < 0) and np.all(noisy[1] > 0)
    # The interval's half-width is about 1.96 standard errors of the mean difference.
    b = rng.permuted(a, axis=0)
    half = (paired_bootstrap(a, b)[1] - paired_bootstrap(a, b)[0]) / 2
    assert half == pytest.approx(1.96 * (a - b).std(0) / np.sqrt(200), rel=0.15)
    with pytest.raises(ValueError, match="same problems"):
        paired_bootstrap(a, a[:10])


def test_pass1_gain_is_paired_over_problems():
    from rlsys.loop.controller import pass1_gain

    # 40 problems x 4 samples: each problem gains exactly one solved sample -> +0.25, no spread at all
    before = {"solved": [1] * 20 + [2] * 20, "n": 4}
    after = {"solved": [2] * 20 + [3] * 20, "n": 4}
    assert pass1_gain(before, after) == pytest.approx((0.25, 0.25, 0.25))
    # half the problems +1.0, half unchanged: mean +0.5; the interval holds it and excludes 0
    gain, lo, hi = pass1_gain({"solved": [0] * 40, "n": 4}, {"solved": [4] * 20 + [0] * 20, "n": 4})
    assert gain == pytest.approx(0.5) and 0.25 < lo < 0.5 < hi < 0.75
