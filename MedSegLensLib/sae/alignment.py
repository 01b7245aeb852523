"""How well single latents pick out tumour subregions: voxel-wise AUROC per latent.

For a region (NCR, ED or ET) every latent's activation is a score for "this voxel
belongs to the region"; its AUROC (Mann-Whitney, ties counted half) says how well
that one latent separates the region from every other sampled voxel. Reported per
region: the best latent and how many latents exceed an AUROC of 0.9.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata

from .sparse_ops import SparseCodes

REGION_LABELS = {"NCR": 1, "ED": 2, "ET": 3}
STRONG_AUROC = 0.9
LATENT_CHUNK = 128


@dataclass
class RegionAlignment:
    best_auroc: float
    best_latent: int
    latents_above_0_9: int
    voxels: int

    def to_dict(self) -> dict:
        return asdict(self)


def latent_aurocs(codes: SparseCodes, positive: np.ndarray, n_latents: int) -> np.ndarray:
    """AUROC of every latent's activation for the boolean row labels `positive` (NaN if one class is empty)."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    out = np.full(n_latents, np.nan)
    if n_pos == 0 or n_neg == 0:
        return out
    rows, latents, values = codes.rows.numpy(), codes.latents.numpy(), codes.values.numpy()
    for start in range(0, n_latents, LATENT_CHUNK):
        stop = min(n_latents, start + LATENT_CHUNK)
        dense = np.zeros((codes.n_rows, stop - start), dtype=np.float32)
        keep = (latents >= start) & (latents < stop)
        dense[rows[keep], latents[keep] - start] = values[keep]
        ranks = rankdata(dense, axis=0)
        out[start:stop] = (ranks[positive].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return out


def region_alignment(codes: SparseCodes, labels: np.ndarray, n_latents: int) -> dict[str, RegionAlignment]:
    """Best latent AUROC and count of latents above 0.9 for NCR, ED and ET (labels: BraTS values per row)."""
    result = {}
    for region, value in REGION_LABELS.items():
        positive = np.asarray(labels) == value
        aurocs = latent_aurocs(codes, positive, n_latents)
        if np.all(np.isnan(aurocs)):
            result[region] = RegionAlignment(float("nan"), -1, 0, int(positive.sum()))
            continue
        best = int(np.nanargmax(aurocs))
        result[region] = RegionAlignment(
            float(aurocs[best]), best, int(np.sum(aurocs > STRONG_AUROC)), int(positive.sum())
        )
    return result
