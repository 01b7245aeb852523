"""Small statistics shared by the diffing analyses: case bootstrap, normal p-values, BH.

The resampling unit is the case, never the voxel: voxels of one case are strongly
correlated, so a voxel bootstrap would give far too narrow intervals.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr


def case_bootstrap_weights(groups: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_cases) multiplicities: each replicate redraws the cases of every group with replacement.

    `groups[c]` is case c's group (e.g. population); the number of cases per group stays
    fixed, so a population's share of a comparison never changes between replicates.
    """
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_boot, groups.size), dtype=np.float64)
    replicate = np.arange(n_boot)[:, None]
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        draws = members[rng.integers(0, members.size, size=(n_boot, members.size))]
        np.add.at(weights, (np.broadcast_to(replicate, draws.shape), draws), 1.0)
    return weights


def normal_upper_p(estimate: np.ndarray, bound: float, se: np.ndarray) -> np.ndarray:
    """One-sided p-value of H0: true value <= bound, normal approximation with standard error `se`."""
    se = np.maximum(np.asarray(se, dtype=np.float64), 1e-12)
    return ndtr(-(np.asarray(estimate, dtype=np.float64) - bound) / se)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (q-values); NaN entries stay NaN and are not counted as tests."""
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    flat_p, flat_q = p.reshape(-1), q.reshape(-1)
    valid = np.flatnonzero(~np.isnan(flat_p))
    m = valid.size
    if m == 0:
        return q
    order = valid[np.argsort(flat_p[valid], kind="stable")]
    ranked = flat_p[order] * m / np.arange(1, m + 1)
    flat_q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return flat_q.reshape(p.shape)


def percentile_interval(replicates: np.ndarray, level: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval along `axis`."""
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail], axis=axis)
    return low, high
