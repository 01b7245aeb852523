"""Rates with 95 % Wilson intervals and summaries of per-case Dice changes."""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054


def wilson(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (0, 1 when there is no trial)."""
    if total <= 0:
        return 0.0, 1.0
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def describe(values) -> dict[str, float]:
    """Mean, median, 5th/95th percentiles and the fractions up and down of a list of Dice changes."""
    values = np.asarray(list(values), dtype=float)
    if not len(values):
        return {"n": 0}
    return {
        "n": len(values),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "p05": float(np.percentile(values, 5)),
        "p95": float(np.percentile(values, 95)),
        "improved": float((values > 0.01).mean()),
        "worsened": float((values < -0.01).mean()),
    }


def paired_bootstrap(differences, replicates: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, 2.5th, 97.5th percentile) of the mean of paired per-case differences over case resamples."""
    values = np.asarray(list(differences), dtype=float)
    if not len(values):
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(int(replicates), len(values)))].mean(axis=1)
    return float(values.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def sign_test(differences, tolerance: float = 0.0) -> tuple[int, int, float]:
    """(positive, negative, two-sided exact binomial p) over the differences that are not ties."""
    values = np.asarray(list(differences), dtype=float)
    positive, negative = int((values > tolerance).sum()), int((values < -tolerance).sum())
    n = positive + negative
    if n == 0:
        return 0, 0, 1.0
    low = min(positive, negative)
    tail = sum(math.comb(n, i) for i in range(low + 1)) / 2**n
    return positive, negative, min(1.0, 2 * tail)


def holm(p_values) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    p = list(p_values)
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [0.0] * len(p), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted
