"""Bring latent maps of different resolutions onto one common grid, as sparse linear operators.

A feature map of shape (d, h, w) covers the whole image: cell i of an axis with n
cells spans [i/n, (i+1)/n) of that axis (the convention of `sae.feature_rows`). The
resampling from n_src to n_dst cells is a small sparse matrix per axis: linear
interpolation at the destination cell centres when upsampling, the overlap-weighted
average of source cells when downsampling (no aliasing, sums preserved as means).
The 3-D operator is the Kronecker product of the three, so a case's sparse codes
(voxels x latents) are resampled by one sparse product and stay sparse.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..sae.feature_rows import image_coordinates


def axis_resampling(n_src: int, n_dst: int) -> sp.csr_matrix:
    """(n_dst, n_src) weights along one axis; rows sum to 1."""
    if n_src < 1 or n_dst < 1:
        raise ValueError("axis lengths must be positive")
    if n_dst >= n_src:  # upsample: linear interpolation between source cell centres
        position = np.clip((np.arange(n_dst) + 0.5) * n_src / n_dst - 0.5, 0, n_src - 1)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, n_src - 1)
        frac = position - low
        rows = np.concatenate([np.arange(n_dst), np.arange(n_dst)])
        cols = np.concatenate([low, high])
        vals = np.concatenate([1 - frac, frac])
    else:  # downsample: average of the source cells each destination cell overlaps, by overlap
        edges_src = np.arange(n_src + 1) / n_src
        rows, cols, vals = [], [], []
        for i in range(n_dst):
            lo, hi = i / n_dst, (i + 1) / n_dst
            first, last = int(np.floor(lo * n_src)), int(np.ceil(hi * n_src))
            for j in range(first, min(last, n_src)):
                overlap = min(hi, edges_src[j + 1]) - max(lo, edges_src[j])
                if overlap > 1e-12:
                    rows.append(i), cols.append(j), vals.append(overlap * n_dst)
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(n_dst, n_src))
    matrix.sum_duplicates()
    return matrix


def grid_resampling(src_shape: tuple[int, int, int], dst_shape: tuple[int, int, int]) -> sp.csr_matrix:
    """(prod(dst), prod(src)) operator on C-ordered flattened volumes."""
    x, y, z = (axis_resampling(s, d) for s, d in zip(src_shape, dst_shape))
    return sp.kron(x, sp.kron(y, z, format="csr"), format="csr")


def resample_codes(codes: sp.csr_matrix, src_shape: tuple[int, int, int], dst_shape: tuple[int, int, int]) -> sp.csr_matrix:
    """Sparse codes (voxels of src_shape x latents) on the grid dst_shape."""
    if codes.shape[0] != int(np.prod(src_shape)):
        raise ValueError(f"codes have {codes.shape[0]} rows but the grid {src_shape} has {int(np.prod(src_shape))} voxels")
    if tuple(src_shape) == tuple(dst_shape):
        return codes.tocsr()
    return (grid_resampling(src_shape, dst_shape) @ codes).tocsr()


def image_classes_on_grid(image_map: np.ndarray, grid_shape: tuple[int, int, int]) -> np.ndarray:
    """The value of an image-grid map (strata, labels) at the image voxel under each grid cell's centre."""
    coords = image_coordinates(tuple(grid_shape), tuple(image_map.shape))
    return image_map[coords[..., 0], coords[..., 1], coords[..., 2]]
