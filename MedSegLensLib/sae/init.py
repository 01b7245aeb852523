"""Data-dependent initialisation: input scale and geometric-median decoder bias."""

from __future__ import annotations

import torch

from .reduce import LOCAL, Reducer


def input_scale_for(sample: torch.Tensor, reducer: Reducer = LOCAL) -> float:
    """Factor that gives the sample a mean squared row norm of d_in (about 1 per channel).

    Fixing the input norm makes learning rate, AuxK weight and threshold behave the
    same across layers whose activations differ in magnitude by orders. With a
    reducer, `sample` is this rank's part of a sample split over ranks.
    """
    totals = reducer.sum(torch.stack([sample.double().pow(2).sum(), torch.tensor(float(sample.shape[0]))]))
    mean_sq = float(totals[0] / totals[1])
    if mean_sq <= 0:
        return 1.0
    return float((sample.shape[1] / mean_sq) ** 0.5)


def geometric_median(
    points: torch.Tensor, iterations: int = 100, tol: float = 1e-6, reducer: Reducer = LOCAL
) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances.

    Robust to the heavy tails of activation rows (a few extreme voxels barely move
    it), unlike the mean. Computed in float64. With a reducer, `points` is this
    rank's part; each iteration's weighted sums are summed over ranks.
    """
    pts = points.double()
    median = _weighted_mean(pts, torch.ones(pts.shape[0], dtype=torch.float64), reducer)
    eps = 1e-12
    for _ in range(iterations):
        dist = (pts - median).norm(dim=1).clamp_min(eps)
        new = _weighted_mean(pts, 1.0 / dist, reducer)
        shift = (new - median).norm().item()
        median = new
        if shift <= tol * max(1.0, median.norm().item()):
            break
    return median.to(points.dtype)


def _weighted_mean(pts: torch.Tensor, weights: torch.Tensor, reducer: Reducer) -> torch.Tensor:
    totals = reducer.sum(torch.cat([weights @ pts, weights.sum().reshape(1)]))
    return totals[:-1] / totals[-1]
