"""BraTS overlap and distance scores on label arrays: Dice and 95 % Hausdorff distance.

Structures: the regions WT = {1,2,3}, TC = {1,3}, ET = {3} and the single labels
NCR = {1} and ED = {2} (the ET label is the ET region, so it is scored once).

Conventions follow the official BraTS tooling (brats-evaluation 0.0.10 on top of
panoptica 2.1): surfaces are the mask voxels removed by one erosion with the
6-neighbour cross; HD95 is the 95th percentile (linear interpolation) of the
pooled distances from each surface to the other, in millimetres. Empty masks:
both empty gives Dice 1 and HD95 0; exactly one empty gives Dice 0 and HD95
`HD95_PENALTY_MM`, the value brats-evaluation substitutes (373 mm, the diagonal
of the 240x240x155 SRI-24 1 mm box; older BraTS releases wrote 373.13).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

STRUCTURES: dict[str, tuple[int, ...]] = {
    "WT": (1, 2, 3),
    "TC": (1, 3),
    "ET": (3,),
    "NCR": (1,),
    "ED": (2,),
}
REGIONS = ("WT", "TC", "ET")
HD95_PENALTY_MM = 373.0
_CROSS = ndimage.generate_binary_structure(3, 1)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks; 1 when both are empty."""
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(ref))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(pred & ref)) / total


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Iterable[float] = (1.0, 1.0, 1.0)) -> float:
    """95 % Hausdorff distance in mm between two boolean 3D masks (BraTS empty-mask rules)."""
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not (has_pred or has_ref):
        return 0.0
    if not (has_pred and has_ref):
        return HD95_PENALTY_MM
    pred, ref = _crop_to_union(pred, ref)
    spacing = tuple(float(s) for s in spacing)
    pred_surface = pred ^ ndimage.binary_erosion(pred, _CROSS)
    ref_surface = ref ^ ndimage.binary_erosion(ref, _CROSS)
    to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=spacing)[pred_surface]
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing)[ref_surface]
    return float(np.percentile(np.concatenate([to_ref, to_pred]), 95))


def _crop_to_union(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to their joint bounding box (a speed-up that changes no distance).

    Every surface voxel lies inside, and a mask voxel on the box's edge has a
    background neighbour outside it, so it is surface in the full volume too.
    """
    coords = np.nonzero(a | b)
    box = tuple(slice(int(c.min()), int(c.max()) + 1) for c in coords)
    return a[box], b[box]


def brats_scores(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Iterable[float] = (1.0, 1.0, 1.0),
    with_hd95: bool = True,
    structures: Iterable[str] = tuple(STRUCTURES),
) -> dict[str, float]:
    """`dice_<S>` (and `hd95_<S>`) for each structure S of two BraTS label maps on one grid."""
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    spacing = tuple(spacing)
    scores: dict[str, float] = {}
    for name in structures:
        labels = STRUCTURES[name]
        p, r = np.isin(pred, labels), np.isin(ref, labels)
        scores[f"dice_{name}"] = dice(p, r)
        if with_hd95:
            scores[f"hd95_{name}"] = hd95(p, r, spacing)
    return scores


def score_columns(with_hd95: bool = True, structures: Iterable[str] = tuple(STRUCTURES)) -> list[str]:
    """Column names `brats_scores` returns, in order."""
    structures = tuple(structures)
    return [f"dice_{s}" for s in structures] + ([f"hd95_{s}" for s in structures] if with_hd95 else [])
