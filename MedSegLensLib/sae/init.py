"""Data-dependent initialisation: input scale and geometric-median decoder bias."""

from __future__ import annotations

import torch


def input_scale_for(sample: torch.Tensor) -> float:
    """Factor that gives the sample a mean squared row norm of d_in (about 1 per channel).

    Fixing the input norm makes learning rate, AuxK weight and threshold behave the
    same across layers whose activations differ in magnitude by orders.
    """
    mean_sq = sample.double().pow(2).sum(1).mean().item()
    if mean_sq <= 0:
        return 1.0
    return float((sample.shape[1] / mean_sq) ** 0.5)


def geometric_median(points: torch.Tensor, iterations: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances.

    Robust to the heavy tails of activation rows (a few extreme voxels barely move
    it), unlike the mean. Computed in float64.
    """
    pts = points.double()
    median = pts.mean(0)
    eps = 1e-12
    for _ in range(iterations):
        dist = (pts - median).norm(dim=1).clamp_min(eps)
        weights = 1.0 / dist
        new = (weights[:, None] * pts).sum(0) / weights.sum()
        shift = (new - median).norm().item()
        median = new
        if shift <= tol * max(1.0, median.norm().item()):
            break
    return median.to(points.dtype)
