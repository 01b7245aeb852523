"""Smooth random fields: the one source of spatial randomness in the generator.

Deformations, bias fields, tumour borders and tumour texture are all smooth
Gaussian random fields with a chosen correlation length: white noise on a
coarse lattice (two points per feature), interpolated separably with Gaussian
weights (separable, so a 1 mm field takes well under a second); features only
a few voxels wide are blurred white noise on the grid itself.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LATTICE_SIGMA = 0.7  # Gaussian interpolation width, in lattice steps
FINE_STEP = 3.0  # below this many voxels per lattice step, filter on the grid instead


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], spacing_mm: float, length_mm: float) -> np.ndarray:
    """A zero-mean, unit-variance random field whose features are about `length_mm` wide."""
    step = length_mm / spacing_mm / 2.0  # voxels between lattice points
    if step <= FINE_STEP:  # features of a few voxels: blur white noise on the grid itself
        field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), LATTICE_SIGMA * max(step, 1.0))
    else:
        coarse_shape = tuple(int(np.ceil(n / step)) + 4 for n in shape)
        field = rng.standard_normal(coarse_shape, dtype=np.float32)
        for axis, (n, c) in enumerate(zip(shape, coarse_shape)):
            weights = _interpolation_weights(n, c, step)
            field = np.moveaxis(np.tensordot(weights, np.moveaxis(field, axis, 0), axes=1), 0, axis)
    std = float(field.std())
    return ((field - field.mean()) / (std if std > 0 else 1.0)).astype(np.float32)


def _interpolation_weights(n: int, c: int, step: float) -> np.ndarray:
    """(n, c) Gaussian weights from c lattice points onto n voxels (rows sum to 1)."""
    position = np.arange(n) / step + 2.0
    distance = position[:, None] - np.arange(c)[None, :]
    weights = np.exp(-0.5 * (distance / LATTICE_SIGMA) ** 2)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A draw from [low, high] (a degenerate range gives its value)."""
    low, high = bounds
    return float(low if high <= low else rng.uniform(low, high))
