"""`ImportedModel`: a `SegmentationModel` whose preprocessing, windows and output come from its source.

Everything downstream (layers, hooks, activation capture, SAEs, steering, the
CLI, the Slicer worker, the viewer) uses only the base class's contract:
`network`, `config`, `fingerprint`, `prepare(case)`, `logits(prepared,
network=None)`, `to_prediction(...)`, `predict(case)`. Subclasses implement
the three format-specific steps; nothing downstream needs to know the format.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ...data import MODALITIES, Case, Grid
from ..inference import Prediction, PreparedInput, SegmentationModel, autocast
from ..layers import block_names
from .orientation import reorient, resolve_codes
from .semantics import OutputMeaning


class ImportedModel(SegmentationModel):
    """Base of the imported formats: source description, input orientation and output meaning from model.json."""

    source_kernels = True  # results equal to the source's own predictor, bit for bit

    def __init__(
        self, network: nn.Module, config, fingerprint: str, manifest: dict[str, Any], device=None, model_dir=None
    ):
        super().__init__(
            network,
            config,
            fingerprint,
            device=device,
            provenance=manifest.get("provenance") or {},
            model_dir=model_dir,
        )
        self.source: dict[str, Any] = manifest["source"]
        self.description: dict[str, Any] = manifest["description"]
        self.input_orientation: str = manifest["input_orientation"]
        self.outputs = OutputMeaning.from_json(manifest["outputs"])

    def input_array(self, case: Case, reverse_axes: bool = False) -> tuple[np.ndarray, Grid]:
        """The case's modalities in the model's channel order and input voxel order, with that array's grid.

        `reverse_axes` gives SimpleITK's axis order (z, y, x) of the same voxels, as nnU-Net reads files.
        """
        codes = resolve_codes(self.input_orientation, case.source_grid)
        image = case.image[[MODALITIES.index(m) for m in self.config.modalities]]
        return reorient(image, case.grid, codes[::-1] if reverse_axes else codes)

    def run_windows(self, network: nn.Module, prepared: PreparedInput) -> torch.Tensor:
        """Full-volume logits (classes, ...) of `prepared` by the source's own sliding windows."""
        raise NotImplementedError

    def logits(
        self, prepared: PreparedInput, network: nn.Module | None = None, precision: str = "fp32"
    ) -> torch.Tensor:
        """Full-volume logits (1, classes, ...) on `prepared.grid`; hooks on `network` see every window."""
        with torch.no_grad(), autocast(self.device, precision):
            out = self.run_windows(network if network is not None else self.network, prepared)
        return torch.as_tensor(out).float().reshape(1, *out.shape[-4:])

    def layer_roles(self) -> list[tuple[str, str]] | None:
        return block_names(self.network)

    def prediction(self, labels: np.ndarray, prepared: PreparedInput, probabilities: np.ndarray | None) -> Prediction:
        return Prediction(
            labels.astype(np.uint8),
            prepared.case_grid,
            None if probabilities is None else probabilities.astype(np.float32),
            self.fingerprint,
        )
