"""Measured population statistics of a cohort, from its files (not from the generator's parameters).

Used by the tests that check how the populations differ and by
`bench/synth_population_stats.py`, which prints the table in docs/synth.md.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..data import Case, CaseFiles, read_volume
from .location_atlas import PLACEMENT_GROUPS

INFRATENTORIAL = frozenset(PLACEMENT_GROUPS["cerebellum"] + PLACEMENT_GROUPS["brainstem"])
MIN_ENHANCING_VOXELS = 3
NEAR_TUMOUR_MM = 25.0


def case_statistics(files: CaseFiles) -> dict[str, float]:
    """SNR, brain and tumour volumes (cm^3), tumour centroid (mm, RAS) and its region, enhancement."""
    case = files.load()
    voxel_cc = float(np.prod(case.grid.spacing)) / 1000.0
    brain = case.tissue > 0
    white = (case.tissue == 3) & (case.label == 0)
    stats: dict[str, float] = {
        "snr": float(np.mean([np.mean(channel[white]) / np.std(channel[white]) for channel in case.image])),
        "brain_cc": float(brain.sum() * voxel_cc),
        **{
            f"{name}_cc": float(np.isin(case.label, values).sum() * voxel_cc)
            for name, values in (("wt", (1, 2, 3)), ("ncr", (1,)), ("ed", (2,)), ("et", (3,)))
        },
    }
    if case.label.any():
        index = np.argwhere(case.label > 0).mean(axis=0)
        centre = case.grid.affine[:3, :3] @ index + case.grid.affine[:3, 3]
        stats.update(centre_abs_x_mm=float(abs(centre[0])), centre_z_mm=float(centre[2]))
        if files.atlas:
            atlas = read_volume(files.atlas, kind="label").array  # written on the case's own (canonical) grid
            stats["infratentorial"] = float(int(atlas[tuple(np.rint(index).astype(int))]) in INFRATENTORIAL)
        enhancement = _enhancement(case, white)
        if enhancement is not None:
            stats["et_contrast"] = enhancement
    return stats


def _enhancement(case: Case, white: np.ndarray) -> float | None:
    """How much brighter enhancing tumour is on T1c than on T1, each relative to the white matter around it.

    Local white matter (within `NEAR_TUMOUR_MM`) cancels the coil's bias field.
    """
    enhancing = case.label == 3
    if enhancing.sum() < MIN_ENHANCING_VOXELS:
        return None
    distance = ndimage.distance_transform_edt(case.label == 0, sampling=case.grid.spacing)
    near = white & (distance < NEAR_TUMOUR_MM)
    if not near.any():
        return None
    t1, t1c = case.image[0], case.image[1]
    return float((np.median(t1c[enhancing]) / np.median(t1c[near])) / (np.median(t1[enhancing]) / np.median(t1[near])))


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each statistic over the cases that have it."""
    keys = sorted({key for row in rows for key in row})
    return {key: float(np.mean([row[key] for row in rows if key in row])) for key in keys}
