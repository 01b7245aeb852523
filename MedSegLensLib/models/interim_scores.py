"""Stand-in for `MedSegLensLib.metrics.brats_scores` until the metrics package (branch
`datametrics`) is merged; delete this file then (`evaluation.py` already prefers the real one).

Same signature and empty-mask rules (both empty: Dice 1, HD95 0; one empty: Dice 0,
HD95 373 mm). HD95 comes from MONAI's `compute_hausdorff_distance`, which takes the
larger of the two directed 95th percentiles, so it can differ slightly from the
official pooled value.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance

STRUCTURES: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,), "NCR": (1,), "ED": (2,)}
REGIONS = ("WT", "TC", "ET")
HD95_PENALTY_MM = 373.0


def brats_scores(pred: np.ndarray, ref: np.ndarray, spacing: Iterable[float] = (1.0, 1.0, 1.0),
                 with_hd95: bool = True, structures: Iterable[str] = tuple(STRUCTURES)) -> dict[str, float]:
    scores: dict[str, float] = {}
    for name in structures:
        p, r = np.isin(pred, STRUCTURES[name]), np.isin(ref, STRUCTURES[name])
        total = int(p.sum()) + int(r.sum())
        scores[f"dice_{name}"] = 1.0 if total == 0 else 2.0 * int((p & r).sum()) / total
        if with_hd95:
            if not (p.any() or r.any()):
                scores[f"hd95_{name}"] = 0.0
            elif not (p.any() and r.any()):
                scores[f"hd95_{name}"] = HD95_PENALTY_MM
            else:
                as_tensor = lambda m: torch.from_numpy(m)[None, None]  # noqa: E731
                value = compute_hausdorff_distance(as_tensor(p), as_tensor(r), include_background=True,
                                                   percentile=95, spacing=list(spacing))
                scores[f"hd95_{name}"] = float(value.item())
    return scores
