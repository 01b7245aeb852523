"""Bringing a `Case` onto a model's grid, identically for training and inference.

The case is already in canonical (closest-RAS) voxel order. It is resampled
only when its spacing differs from the model's; intensities are then
normalised per modality as the model's config says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from monai.transforms import NormalizeIntensity

from ..data import MODALITIES, Case, Grid
from ..data.geometry import grid_with_spacing, resample_to_grid
from ..errors import InputError, ParameterError
from .config import ModelConfig

SPACING_RTOL = 1e-3


@dataclass
class ModelGridArrays:
    """A case's arrays on the model's grid: image (C, X, Y, Z) float32, label (X, Y, Z) uint8 or None."""

    image: np.ndarray
    label: np.ndarray | None
    grid: Grid
    resampled: bool


def model_grid(case_grid: Grid, config: ModelConfig) -> Grid:
    """The grid the network sees: the case's own, or the same field of view at the model spacing."""
    if config.spacing is None or np.allclose(case_grid.spacing, config.spacing, rtol=SPACING_RTOL):
        return case_grid
    return grid_with_spacing(case_grid, config.spacing)


def normalise(image: np.ndarray, method: str) -> np.ndarray:
    """Per-modality intensity normalisation named in the config."""
    if method == "none":
        return image.astype(np.float32, copy=False)
    if method == "source":
        raise ParameterError("an imported model's cases are prepared by its source's own preprocessing (model.prepare)")
    # z-score over each modality's non-zero (brain) voxels; the background stays 0
    out = NormalizeIntensity(nonzero=True, channel_wise=True)(image)
    return np.asarray(out, dtype=np.float32)


def to_model_grid(case: Case, config: ModelConfig, with_label: bool = False) -> ModelGridArrays:
    """The case's modalities in the config's order, on the model grid, normalised (and its label)."""
    order = [MODALITIES.index(m) for m in config.modalities]
    image = case.image[order]
    label = case.label if with_label else None
    if with_label and label is None:
        raise InputError(f"case {case.case_id}: no segmentation (seg file) found; training and evaluation need one")
    grid = model_grid(case.grid, config)
    resampled = grid is not case.grid
    if resampled:
        image = np.stack([resample_to_grid(channel, case.grid, grid, order=1) for channel in image])
        if label is not None:
            label = resample_to_grid(label, case.grid, grid, order=0)
    return ModelGridArrays(normalise(image, config.normalisation), label, grid, resampled)


def label_to_channel_index(label: np.ndarray, config: ModelConfig, source: str = "segmentation") -> np.ndarray:
    """Label values -> output-channel indices (identity for the BraTS label set 0, 1, 2, 3)."""
    lookup = np.zeros(256, dtype=np.int64)
    for index, value in enumerate(config.label_values):
        lookup[value] = index
    unknown = sorted(set(np.unique(label).tolist()) - set(config.label_values))
    if unknown:
        raise InputError(
            f"{source}: label values {unknown} are not in the model's label set {list(config.label_values)}"
        )
    return lookup[label]


def channel_index_to_label(index: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Output-channel indices -> label values, as uint8."""
    return np.asarray(config.label_values, dtype=np.uint8)[index]
