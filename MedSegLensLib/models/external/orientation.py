"""Feeding a case in the voxel order an imported network was trained on, and coming back.

MedSegLens holds cases in closest-RAS order. Other libraries feed their
networks the file's stored order (nnU-Net's SimpleITK reader, a bundle without
an Orientation transform) or a fixed one. An imported model records the axis
codes of its input ("LPS" = first axis towards the left, ...; "as-stored" = the
input file's own order), and these helpers reorder a volume to them and back,
without interpolation, keeping the exact grid (affine) of every array.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel import orientations
from nibabel.processing import resample_from_to

from ...data import Grid
from ...errors import ParameterError

AS_STORED = "as-stored"
_AXIS_PAIRS = ("LR", "PA", "IS")


def check_axis_codes(codes: str) -> str:
    """A 3-letter code with one of L/R, P/A, I/S each (e.g. LPS), or 'as-stored'."""
    if codes == AS_STORED:
        return codes
    upper = str(codes).upper()
    axes = sorted(next((i for i, pair in enumerate(_AXIS_PAIRS) if c in pair), -1) for c in upper)
    if len(upper) != 3 or axes != [0, 1, 2]:
        raise ParameterError(f"input orientation '{codes}' must be three axis codes like LPS or RAS, or '{AS_STORED}'")
    return upper


def resolve_codes(codes: str, source_grid: Grid) -> str:
    """The concrete axis codes for one case ('as-stored' becomes the input file's own orientation)."""
    return source_grid.orientation if codes == AS_STORED else codes


def reorient(volume: np.ndarray, grid: Grid, codes: str) -> tuple[np.ndarray, Grid]:
    """A volume (..., X, Y, Z) on `grid` put in the voxel order `codes`, with its exact new grid."""
    ornt = orientations.ornt_transform(
        orientations.axcodes2ornt(tuple(grid.orientation)), orientations.axcodes2ornt(tuple(codes))
    )
    lead = volume.ndim - 3
    if lead:
        moved = np.stack([orientations.apply_orientation(v, ornt) for v in volume.reshape(-1, *volume.shape[-3:])])
        moved = moved.reshape(*volume.shape[:lead], *moved.shape[-3:])
    else:
        moved = orientations.apply_orientation(volume, ornt)
    affine = grid.affine @ orientations.inv_ornt_aff(ornt, grid.shape)
    return np.ascontiguousarray(moved), Grid(tuple(int(s) for s in moved.shape[-3:]), affine)


def onto_case_grid(volume: np.ndarray, grid: Grid, case_grid: Grid, order: int) -> np.ndarray:
    """A (C, X, Y, Z) or (X, Y, Z) volume on `grid` brought onto the canonical `case_grid`: reordered when it
    is the same lattice in another voxel order, resampled (order 0 labels, 1 probabilities) otherwise.

    Case voxels just outside the network grid's outermost voxel centres take the edge value, as MONAI's
    inverse Spacing ("border" padding) does, rather than zero.
    """
    reordered, ras_grid = reorient(volume, grid, "RAS")
    if ras_grid.same_as(case_grid):
        return reordered
    channels = reordered.reshape(-1, *reordered.shape[-3:])
    out = np.stack([_resample_edge(v, ras_grid, case_grid, order) for v in channels])
    return out.reshape(*reordered.shape[:-3], *case_grid.shape)


def _resample_edge(volume: np.ndarray, source: Grid, target: Grid, order: int) -> np.ndarray:
    image = nib.Nifti1Image(np.asarray(volume, dtype=np.float32), source.affine)
    out = np.asarray(resample_from_to(image, (tuple(target.shape), target.affine), order=order, mode="nearest").dataobj)
    return out.astype(volume.dtype, copy=False) if order == 0 else out.astype(np.float32, copy=False)
