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
    return {"n": int(len(values)), "mean": float(values.mean()), "median": float(np.median(values)),
            "p05": float(np.percentile(values, 5)), "p95": float(np.percentile(values, 95)),
            "improved": float((values > 0.01).mean()), "worsened": float((values < -0.01).mean())}
