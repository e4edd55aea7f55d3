"""Unbiased pass@k (Chen et al. 2021) from n samples per problem of which c are correct."""

from __future__ import annotations

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k), as the numerically stable product 1 - prod_{i=n-c+1..n} (1 - k/i)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def ks_up_to(n: int) -> list[int]:
    """1, 2, 4, ... up to n (and n itself when it is not a power of two)."""
    ks = [1 << i for i in range(n.bit_length()) if (1 << i) <= n]
    return ks if ks[-1] == n else ks + [n]


def pass_at_k_curve(n: np.ndarray, c: np.ndarray, ks: list[int]) -> dict[int, float]:
    """Mean over problems of pass@k for each k (every problem must have at least k samples)."""
    return {k: float(np.mean([pass_at_k(int(ni), int(ci), k) for ni, ci in zip(n, c)])) for k in ks}


def per_problem_pass_at_k(n: np.ndarray, c: np.ndarray, ks: list[int]) -> np.ndarray:
    """[problems, len(ks)] unbiased pass@k of each problem."""
    return np.array([[pass_at_k(int(ni), int(ci), k) for k in ks] for ni, ci in zip(n, c)])


def paired_bootstrap(a: np.ndarray, b: np.ndarray, reps: int = 4000, seed: int = 0) -> np.ndarray:
    """95% interval [2, ks] of mean(a - b) over problems, resampling problems with both methods paired.

    a and b are per-problem pass@k matrices [problems, ks] on the same problems, so the interval
    covers which problems happened to be in the eval set (the larger noise for small sets)."""
    if a.shape != b.shape:
        raise ValueError(f"paired bootstrap needs the same problems: shapes {a.shape} vs {b.shape}")
    d = a - b
    idx = np.random.default_rng(seed).integers(0, len(d), size=(reps, len(d)))
    return np.percentile(d[idx].mean(axis=1), [2.5, 97.5], axis=0)
