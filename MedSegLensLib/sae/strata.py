"""Stratified voxel sampling for activation capture.

Tumour subregions are 1-2 % of a brain: uniform sampling would give an SAE that
barely sees them. Each voxel is put in one stratum (tumour labels take precedence
over tissue classes) and a fixed quota of voxels is drawn from each stratum, per
case, deterministically for a seed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import ParameterError

STRATA: tuple[str, ...] = ("background", "brain", "CSF", "GM", "WM", "NCR", "ED", "ET")
STRATUM_CODE = {name: code for code, name in enumerate(STRATA)}
# Per case: every tumour voxel up to these counts, tissue classes evenly, little background.
DEFAULT_QUOTAS: dict[str, int] = {
    "background": 256,
    "brain": 1024,
    "CSF": 512,
    "GM": 1024,
    "WM": 1024,
    "NCR": 1024,
    "ED": 1024,
    "ET": 1024,
}
_TUMOUR = {1: "NCR", 2: "ED", 3: "ET"}
_TISSUE = {1: "CSF", 2: "GM", 3: "WM"}


def voxel_strata(
    label: np.ndarray | None, tissue: np.ndarray | None = None, brain_mask: np.ndarray | None = None
) -> np.ndarray:
    """Stratum code (uint8, see STRATA) of every voxel.

    Tumour label (1 NCR, 2 ED, 3 ET) wins; else the tissue class (1 CSF, 2 GM, 3 WM);
    else "brain" inside `brain_mask`, else "background".
    """
    shape = next((a.shape for a in (label, tissue, brain_mask) if a is not None), None)
    if shape is None:
        raise ParameterError("voxel_strata needs at least one of label, tissue or brain_mask")
    for name, arr in (("label", label), ("tissue", tissue), ("brain_mask", brain_mask)):
        if arr is not None and arr.shape != shape:
            raise ParameterError(f"{name} has shape {arr.shape} but the other maps have {shape}; resample them first")
    strata = np.full(shape, STRATUM_CODE["background"], dtype=np.uint8)
    if brain_mask is not None:
        strata[brain_mask.astype(bool)] = STRATUM_CODE["brain"]
    if tissue is not None:
        for value, name in _TISSUE.items():
            strata[tissue == value] = STRATUM_CODE[name]
    if label is not None:
        for value, name in _TUMOUR.items():
            strata[label == value] = STRATUM_CODE[name]
    return strata


def sample_by_stratum(
    strata: np.ndarray, quotas: Mapping[str, int] | None = None, seed: int = 0
) -> tuple[np.ndarray, dict[str, int]]:
    """Flat voxel indices: up to quotas[s] voxels drawn without replacement from each stratum s.

    Returns the sorted indices and the number taken per stratum (fewer than the
    quota where a stratum is small). The same strata, quotas and seed always give
    the same indices; pass a different seed per case.
    """
    quotas = dict(DEFAULT_QUOTAS if quotas is None else quotas)
    unknown = set(quotas) - set(STRATA)
    if unknown:
        raise ParameterError(f"unknown strata in quotas: {', '.join(sorted(unknown))}; use {', '.join(STRATA)}")
    if any(int(q) < 0 for q in quotas.values()):
        raise ParameterError("stratum quotas must be >= 0")
    flat = strata.reshape(-1)
    rng = np.random.default_rng(seed)
    chosen, taken = [], {}
    for name in STRATA:
        pool = np.flatnonzero(flat == STRATUM_CODE[name])
        count = min(int(quotas.get(name, 0)), pool.size)
        taken[name] = count
        if count:
            chosen.append(rng.choice(pool, size=count, replace=False))
    indices = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    return indices, taken
