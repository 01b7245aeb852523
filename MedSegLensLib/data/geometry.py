"""Voxel grids, canonical orientation and resampling.

Computation happens in the closest-to-RAS voxel order (a pure permutation and
flip of the input's axes, so no interpolation); every output goes back to the
input's own voxel order and affine. A volume whose axes are flipped but that
covers the same physical space therefore yields the same physical result.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from nibabel import orientations
from nibabel.processing import resample_from_to

Box = tuple[slice, ...]  # a box of a grid's voxels, one slice per axis

_RAS = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


@dataclass(frozen=True, eq=False)
class Grid:
    """A 3D voxel grid: shape in voxels and the voxel-to-RAS affine (mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def orientation(self) -> str:
        return "".join(orientations.aff2axcodes(self.affine))

    def same_as(self, other: Grid, atol: float = 1e-3) -> bool:
        return tuple(self.shape) == tuple(other.shape) and np.allclose(self.affine, other.affine, atol=atol)

    def to_json(self) -> dict:
        return {"shape": list(self.shape), "affine": np.asarray(self.affine).tolist()}

    @classmethod
    def from_json(cls, obj: dict) -> Grid:
        return cls(tuple(int(s) for s in obj["shape"]), np.asarray(obj["affine"], dtype=float))


def canonical_transform(grid: Grid) -> np.ndarray:
    """The nibabel orientation transform from `grid`'s voxel order to closest RAS."""
    return orientations.io_orientation(grid.affine)


def to_canonical(volume: np.ndarray, grid: Grid) -> tuple[np.ndarray, Grid]:
    """Reorder the last three axes of `volume` to closest RAS; return it and its grid."""
    ornt = canonical_transform(grid)
    moved = _apply_spatial(volume, ornt)
    affine = grid.affine @ orientations.inv_ornt_aff(ornt, grid.shape)
    return moved, Grid(tuple(moved.shape[-3:]), affine)


def from_canonical(volume: np.ndarray, source: Grid) -> np.ndarray:
    """Inverse of `to_canonical`: put a canonical-order volume back in `source`'s voxel order."""
    back = orientations.ornt_transform(_RAS, canonical_transform(source))
    out = _apply_spatial(volume, back)
    if tuple(out.shape[-3:]) != tuple(source.shape):
        raise ValueError(f"volume of shape {volume.shape} does not come from a grid of shape {source.shape}")
    return out


def _apply_spatial(volume: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Apply an orientation transform to the last three axes (leading axes are channels)."""
    lead = volume.ndim - 3
    if lead == 0:
        return np.ascontiguousarray(orientations.apply_orientation(volume, ornt))
    moved = np.moveaxis(volume, range(lead), range(-lead, 0))
    moved = orientations.apply_orientation(moved, ornt)
    return np.ascontiguousarray(np.moveaxis(moved, range(-lead, 0), range(lead)))


def resample_to_grid(volume: np.ndarray, source: Grid, target: Grid, order: int = 1) -> np.ndarray:
    """Resample a 3D volume from `source` onto `target` in physical space.

    `order=0` (nearest) for label maps, 1 (trilinear) for intensities and
    probabilities. Voxels outside the source's field of view become 0.
    """
    if source.same_as(target):
        return volume
    image = nib.Nifti1Image(np.asarray(volume, dtype=np.float32), source.affine)
    out = resample_from_to(image, (tuple(target.shape), target.affine), order=order, mode="constant", cval=0.0)
    data = np.asarray(out.dataobj)
    return data.astype(volume.dtype, copy=False) if order == 0 else data.astype(np.float32, copy=False)


def sub_grid(grid: Grid, box: Box) -> Grid:
    """The voxels `box` of `grid` as a grid of their own (same spacing and directions)."""
    start = np.array([b.start for b in box], dtype=float)
    affine = np.array(grid.affine, dtype=float)
    affine[:3, 3] = grid.affine[:3, :3] @ start + grid.affine[:3, 3]
    return Grid(tuple(b.stop - b.start for b in box), affine)


def linear_reach(source: Grid, target: Grid, box: Box) -> Box | None:
    """The box of `target` voxels whose trilinear sample of `source` (`resample_to_grid`, order 1) reads a voxel
    of `box`; None when none does. A superset for oblique grids: what a change inside `box` can reach."""
    # a target voxel reads source voxels floor(m) and floor(m) + 1 of its source coordinate m
    low, high = _mapped_bounds(source, target, [b.start - 1 for b in box], [b.stop for b in box])
    start = np.maximum(np.floor(low).astype(int), 0)
    stop = np.minimum(np.ceil(high).astype(int) + 1, target.shape)
    return None if np.any(stop <= start) else tuple(slice(int(a), int(z)) for a, z in zip(start, stop))


def linear_support(source: Grid, target: Grid, box: Box) -> Box:
    """The box of `source` voxels that trilinear samples at `box` of `target` read, one voxel to spare on each
    side: `resample_to_grid` from this crop equals the whole source's result on `box`."""
    low, high = _mapped_bounds(target, source, [b.start for b in box], [b.stop - 1 for b in box])
    start = np.maximum(np.floor(low).astype(int) - 1, 0)
    stop = np.minimum(np.floor(high).astype(int) + 3, source.shape)
    return tuple(slice(int(a), int(max(a, z))) for a, z in zip(start, stop))


def _mapped_bounds(origin: Grid, destination: Grid, low, high) -> tuple[np.ndarray, np.ndarray]:
    """Per axis, the least and greatest `destination` voxel coordinate of the corners of the `origin` voxel
    box [low, high] (inclusive, continuous)."""
    corners = np.array(list(itertools.product(*zip(low, high))), dtype=float).T
    world = origin.affine[:3, :3] @ corners + origin.affine[:3, 3:4]
    inverse = np.linalg.inv(destination.affine)
    ijk = inverse[:3, :3] @ world + inverse[:3, 3:4]
    return ijk.min(1), ijk.max(1)


def overlap_fraction(source: Grid, target: Grid) -> float:
    """Fraction of `target`'s voxel centres that fall inside `source`'s field of view."""
    corners = np.array(np.meshgrid(*[np.linspace(0, s - 1, 9) for s in target.shape], indexing="ij"))
    points = corners.reshape(3, -1)
    world = target.affine[:3, :3] @ points + target.affine[:3, 3:4]
    inv = np.linalg.inv(source.affine)
    ijk = inv[:3, :3] @ world + inv[:3, 3:4]
    inside = np.all((ijk > -0.5) & (ijk < np.array(source.shape)[:, None] - 0.5), axis=0)
    return float(inside.mean())


def grid_with_spacing(grid: Grid, spacing: tuple[float, float, float]) -> Grid:
    """A grid covering the same field of view as `grid` with a new voxel spacing."""
    old = np.asarray(grid.spacing)
    new = np.asarray(spacing, dtype=float)
    shape = tuple(int(max(1, round(n * o / s))) for n, o, s in zip(grid.shape, old, new))
    directions = grid.affine[:3, :3] / old
    affine = np.eye(4)
    affine[:3, :3] = directions * new
    # keep the field of view's first corner in place (voxel corners, not centres)
    corner = grid.affine[:3, :3] @ np.full(3, -0.5) + grid.affine[:3, 3]
    affine[:3, 3] = corner - affine[:3, :3] @ np.full(3, -0.5)
    return Grid(shape, affine)


def canonical_grid(grid: Grid) -> Grid:
    """The grid `to_canonical` gives for `grid`, without touching any voxels."""
    ornt = canonical_transform(grid)
    shape = tuple(int(grid.shape[int(axis)]) for axis in np.argsort(ornt[:, 0]))
    return Grid(shape, grid.affine @ orientations.inv_ornt_aff(ornt, grid.shape))
