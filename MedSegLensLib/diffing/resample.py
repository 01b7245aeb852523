"""Bring two networks' latent maps onto one common grid, as sparse linear operators.

Each captured latent map lives on its layer's world grid (`CaseCodes.grid`: voxel
j of a stride-s layer at model voxel s*j). The common grid is the finer of the two
layer grids; the other map is resampled onto it by trilinear interpolation in world
coordinates, edges extended (as `sae.capture.resample_layer_volume` does for
overlays). Written as a sparse (target voxels x source voxels) matrix with at most
8 entries per row, so a case's sparse codes (voxels x latents) are resampled by one
sparse product and stay sparse.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..data import Grid


def trilinear_operator(source: Grid, target: Grid) -> sp.csr_matrix:
    """(prod(target.shape), prod(source.shape)) trilinear weights; C-ordered flat voxels; rows sum to 1."""
    if source.same_as(target, atol=1e-6):
        return sp.identity(int(np.prod(source.shape)), format="csr")
    mapping = np.linalg.inv(np.asarray(source.affine, float)) @ np.asarray(target.affine, float)
    axes = np.meshgrid(*[np.arange(n) for n in target.shape], indexing="ij")
    points = np.stack([a.reshape(-1) for a in axes] + [np.ones(axes[0].size)])
    position = (mapping[:3] @ points).T  # continuous source index of every target voxel centre
    limit = np.asarray(source.shape) - 1
    position = np.clip(position, 0, limit)
    low = np.minimum(np.floor(position).astype(np.int64), np.maximum(limit - 1, 0))
    frac = position - low
    rows, cols, vals = [], [], []
    target_index = np.arange(position.shape[0])
    for corner in range(8):
        offset = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        index = np.minimum(low + offset, limit)
        weight = np.prod(np.where(offset == 1, frac, 1 - frac), axis=1)
        keep = weight > 1e-12
        rows.append(target_index[keep])
        cols.append(np.ravel_multi_index(index[keep].T, source.shape))
        vals.append(weight[keep])
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(int(np.prod(target.shape)), int(np.prod(source.shape))),
    )
    matrix.sum_duplicates()
    return matrix


def resample_codes(codes: sp.csr_matrix, source: Grid, target: Grid) -> sp.csr_matrix:
    """Sparse codes (voxels of `source` x latents) on the grid `target`."""
    n = int(np.prod(source.shape))
    if codes.shape[0] != n:
        raise ValueError(f"codes have {codes.shape[0]} rows but the grid {tuple(source.shape)} has {n} voxels")
    return (trilinear_operator(source, target) @ codes).tocsr()


def finer_grid(a: Grid, b: Grid) -> Grid:
    """The grid with more voxels (the common grid of an architecture comparison)."""
    return a if int(np.prod(a.shape)) >= int(np.prod(b.shape)) else b
