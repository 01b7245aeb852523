"""Regions that confine steering, as boolean masks on the model grid."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..data import Grid, read_volume
from ..data.geometry import overlap_fraction, resample_to_grid
from ..errors import InputError
from ..steering_contract import RegionSpec

MIN_MASK_OVERLAP = 0.5


def tumour_margin_mask(tumour: np.ndarray, spacing, margin_mm: float) -> np.ndarray:
    """The voxels within `margin_mm` (Euclidean, in mm) of the predicted tumour."""
    tumour = np.asarray(tumour, dtype=bool)
    if not tumour.any() or margin_mm <= 0:
        return tumour
    return ndimage.distance_transform_edt(~tumour, sampling=spacing) <= margin_mm


def mask_file_on_grid(path: str, grid: Grid) -> np.ndarray:
    """A mask file (any geometry overlapping the case) as a boolean array on `grid` (nearest neighbour)."""
    volume = read_volume(path, kind="label")
    if overlap_fraction(volume.grid, grid) < MIN_MASK_OVERLAP:
        raise InputError(
            f"{path}: the mask does not cover the case (less than half of its field of view overlaps); "
            "pass a mask drawn on this case"
        )
    mask = resample_to_grid((np.asarray(volume.array) != 0).astype(np.uint8), volume.grid, grid, order=0) > 0
    if not mask.any():
        raise InputError(f"{path}: the mask is empty on this case; pass a mask with at least one non-zero voxel")
    return mask


def region_mask(region: RegionSpec, grid: Grid, tumour: np.ndarray) -> np.ndarray | None:
    """The region on the model grid (`tumour`: the unsteered predicted tumour there); None for the whole volume."""
    if region.kind == "none":
        return None
    if region.kind == "tumour-margin":
        return tumour_margin_mask(tumour, grid.spacing, region.margin_mm)
    return mask_file_on_grid(region.path, grid)
