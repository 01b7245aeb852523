"""Sparse SAE codes of a whole case at a hooked layer.

    codes = encode_case(model, sae, case)             # the SAE's own layer
    heat = codes.latent_map(117)                      # (X, Y, Z) on case.grid, trilinear
    few = codes.dense([117, 9])                       # (2, d, h, w) on the layer grid

Codes are kept sparse: one entry (voxel, latent, value) per active latent of a
layer voxel, k per voxel for TopK or every pre-activation above the learned
threshold for BatchTopK. The SAE is checked against the model and layer before
the network runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data import Case, Grid
from ..errors import ParameterError
from ..models.inference import PreparedInput, SegmentationModel
from .capture import FeatureMap, layer_features, resample_layer_volume
from .io import check_compatible
from .model import SparseAutoencoder
from .sparse_ops import SparseCodes, concat

PLACES = ("image", "layer")
CHUNK_ENTRIES = 1 << 24  # rows x latents of one encoder chunk (64 MiB of float32)


@dataclass
class CaseCodes:
    """Sparse codes of every voxel of a layer map, with the grids to place them.

    voxel: int64 flat index into `shape` (C order), sorted; latent: int64; value:
    float32 > 0. grid: the layer's world grid; case_grid: the case's canonical grid.
    """

    voxel: torch.Tensor
    latent: torch.Tensor
    value: torch.Tensor
    shape: tuple[int, int, int]
    grid: Grid
    case_grid: Grid
    n_latents: int
    layer: str
    model_fingerprint: str
    case_id: str = ""

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))

    def sparse(self) -> SparseCodes:
        """The codes as the SAE's `SparseCodes` (rows = layer voxels), e.g. for `sae.decode_sparse`."""
        return SparseCodes(self.voxel, self.latent, self.value, self.n_voxels)

    def _check_latents(self, latents: Sequence[int]) -> None:
        bad = [int(j) for j in latents if not 0 <= int(j) < self.n_latents]
        if bad:
            raise ParameterError(f"latent(s) {bad} out of range: this SAE has latents 0..{self.n_latents - 1}")

    def dense(self, latents: Sequence[int]) -> np.ndarray:
        """(len(latents), d, h, w) float32 activations of a few latents on the layer grid."""
        latents = [int(j) for j in latents]
        self._check_latents(latents)
        out = np.zeros((len(latents), self.n_voxels), dtype=np.float32)
        voxel, latent, value = self.voxel.numpy(), self.latent.numpy(), self.value.numpy()
        for slot, j in enumerate(latents):
            where = latent == j
            out[slot, voxel[where]] = value[where]
        return out.reshape(len(latents), *self.shape)

    def latent_map(self, latent: int, on: str = "image") -> np.ndarray:
        """One latent's activation: on the case grid (trilinear, for overlays) or on the layer grid."""
        if on not in PLACES:
            raise ParameterError(f"on={on!r}: use 'image' (the case grid) or 'layer' (the layer grid)")
        layer_map = self.dense([latent])[0]
        return layer_map if on == "layer" else resample_layer_volume(layer_map, self.grid, self.case_grid)

    def l0_map(self) -> np.ndarray:
        """(d, h, w) number of active latents per layer voxel."""
        counts = torch.bincount(self.voxel, minlength=self.n_voxels)
        return counts.numpy().reshape(self.shape).astype(np.int32)

    def firing_counts(self) -> np.ndarray:
        """(n_latents,) number of layer voxels where each latent is active."""
        return torch.bincount(self.latent, minlength=self.n_latents).numpy()

    def decode(self, sae: SparseAutoencoder) -> torch.Tensor:
        """The SAE reconstruction (C, d, h, w) of the layer map."""
        rows = sae.decode_sparse(self.sparse())
        return rows.T.reshape(rows.shape[1], *self.shape).contiguous()


@torch.no_grad()
def encode_rows(sae: SparseAutoencoder, rows: torch.Tensor) -> SparseCodes:
    """Codes of many rows, in chunks so the dense pre-activations stay small."""
    chunk = max(256, CHUNK_ENTRIES // sae.n_latents)
    parts = []
    for start in range(0, rows.shape[0], chunk):
        codes = sae.encode_sparse(rows[start : start + chunk].float())
        codes.rows = codes.rows + start
        parts.append(codes)
    return (
        concat(parts, rows.shape[0])
        if parts
        else SparseCodes(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), torch.zeros(0), 0)
    )


def encode_features(sae: SparseAutoencoder, fmap: FeatureMap) -> CaseCodes:
    """Codes of a captured feature map (the SAE must belong to its model and layer)."""
    check_compatible(sae, fmap.model_fingerprint, fmap.layer, fmap.channels)
    codes = encode_rows(sae, fmap.rows())
    return CaseCodes(
        codes.rows,
        codes.latents,
        codes.values.float(),
        fmap.shape,
        fmap.grid,
        fmap.case_grid,
        sae.n_latents,
        fmap.layer,
        fmap.model_fingerprint,
        fmap.case_id,
    )


def encode_case(
    model: SegmentationModel,
    sae: SparseAutoencoder,
    case: Case | PreparedInput,
    layer: str | None = None,
    precision: str = "fp32",
) -> CaseCodes:
    """Run the model over the case with the SAE's layer hooked and encode every layer voxel.

    `layer` defaults to the layer the SAE was trained on; a mismatch of model,
    layer or channel count is refused (`CompatibilityError`) before any work.
    """
    info = getattr(sae, "info", None)
    layer = layer or (info.layer if info is not None else None)
    if layer is None:
        raise ParameterError("name the layer: this SAE carries no record of the layer it was trained on")
    check_compatible(sae, model.fingerprint, layer, sae.d_in)  # model and layer, before the network runs
    return encode_features(sae, layer_features(model, case, layer, precision))
