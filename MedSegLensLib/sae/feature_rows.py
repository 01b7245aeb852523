"""Turn one case's feature map (C x d x h x w, any resolution) into sampled activation rows.

This is the backbone-independent half of activation capture: whatever produced the
feature map (a forward hook on a full volume or on patches), its voxels are mapped
to the image grid, given the label / tissue class found there, stratified, sampled
with per-stratum quotas and returned with their image coordinates, ready for
`StoreWriter.add_case`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ParameterError
from .store import NO_CLASS
from .strata import sample_by_stratum, voxel_strata


@dataclass
class FeatureRows:
    activations: torch.Tensor  # rows x C, float32
    coords: np.ndarray  # rows x 3 int, voxel indices in the image grid
    label: np.ndarray  # rows, uint8 (255 = unknown)
    tissue: np.ndarray  # rows, uint8 (255 = unknown)
    stratum: np.ndarray  # rows, uint8 (see strata.STRATA)
    taken: dict[str, int]  # rows per stratum


def image_coordinates(feature_shape: tuple[int, int, int], image_shape: tuple[int, int, int]) -> np.ndarray:
    """Image voxel (i, j, k) under the centre of every feature voxel, shape (d, h, w, 3)."""
    axes = []
    for n_feat, n_img in zip(feature_shape, image_shape):
        centres = (np.arange(n_feat) + 0.5) * (n_img / n_feat)
        axes.append(np.clip(np.floor(centres).astype(np.int64), 0, n_img - 1))
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def sample_feature_map(
    features: torch.Tensor,
    image_shape: tuple[int, int, int],
    label: np.ndarray | None = None,
    tissue: np.ndarray | None = None,
    brain_mask: np.ndarray | None = None,
    quotas: Mapping[str, int] | None = None,
    seed: int = 0,
    coords: np.ndarray | None = None,
) -> FeatureRows:
    """Rows of `features` at stratified voxels; label/tissue/brain_mask are image-grid maps.

    `coords` (d, h, w, 3): the image voxel under each feature voxel, from the layer's
    world grid (`FeatureMap.case_voxels()`); by default the two shapes are mapped
    proportionally (each feature voxel covers an equal share of the image).
    """
    if features.ndim != 4:
        raise ParameterError(f"feature map must be (channels, d, h, w), got shape {tuple(features.shape)}")
    if coords is None:
        coords = image_coordinates(tuple(features.shape[1:]), tuple(image_shape))
    elif tuple(coords.shape) != (*features.shape[1:], 3):
        raise ParameterError(f"coords have shape {tuple(coords.shape)}, expected {(*features.shape[1:], 3)}")
    at = tuple(coords[..., axis] for axis in range(3))
    label_f = label[at] if label is not None else None
    tissue_f = tissue[at] if tissue is not None else None
    brain_f = brain_mask[at] if brain_mask is not None else None
    if label_f is None and tissue_f is None and brain_f is None:
        brain_f = np.ones(features.shape[1:], dtype=bool)  # no maps: every voxel is "brain"
    strata = voxel_strata(label_f, tissue_f, brain_f)
    indices, taken = sample_by_stratum(strata, quotas, seed)
    flat = features.reshape(features.shape[0], -1)
    unknown = np.full(indices.size, NO_CLASS, dtype=np.uint8)
    return FeatureRows(
        activations=flat[:, torch.from_numpy(indices)].T.float().contiguous(),
        coords=coords.reshape(-1, 3)[indices],
        label=label_f.reshape(-1)[indices].astype(np.uint8) if label_f is not None else unknown,
        tissue=tissue_f.reshape(-1)[indices].astype(np.uint8) if tissue_f is not None else unknown,
        stratum=strata.reshape(-1)[indices],
        taken=taken,
    )
