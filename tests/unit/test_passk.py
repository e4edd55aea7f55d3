"""pass@k against brute-force enumeration of every k-subset of the n samples."""

from itertools import combinations

import numpy as np
import pytest

from rlsys.eval.passk import ks_up_to, pass_at_k, pass_at_k_curve


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
