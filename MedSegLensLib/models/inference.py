"""A loaded model and the one inference path everything uses.

    model = load_model("models/unet")
    prepared = model.prepare(case)            # on the model's grid, normalised
    logits = model.logits(prepared)           # sliding-window, full volume
    prediction = model.to_prediction(logits, prepared)   # labels on case.grid

`predict(case)` chains the three. Hooks registered on `model.network` see every
sliding window, and `logits(..., network=other)` runs a modified copy (e.g. a
steered one) through exactly the same windows, blending and resampling.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from ..data import Case, Grid
from ..data.geometry import Box, linear_reach, linear_support, resample_to_grid, sub_grid
from ..errors import ParameterError
from . import memory
from .config import ModelConfig
from .cpu_convolution import route_conv3d_to_onednn
from .preprocess import channel_index_to_label, to_model_grid
from .registry import default_device
from .storage import load_network

PRECISIONS = ("fp32", "bf16")


@dataclass
class PreparedInput:
    """A case on the model's grid: `tensor` (1, C, X, Y, Z) on the model's device, on `grid`."""

    tensor: torch.Tensor
    grid: Grid
    case_grid: Grid
    resampled: bool
    case_id: str = ""


@dataclass
class Prediction:
    """Labels (X, Y, Z) uint8 on `grid` (the case's canonical grid) and optional probabilities (C, X, Y, Z)."""

    labels: np.ndarray
    grid: Grid
    probabilities: np.ndarray | None
    model_fingerprint: str


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """fp32 (no autocast) or bf16 autocast on the model's device."""
    if precision not in PRECISIONS:
        raise ParameterError(f"precision '{precision}' is unknown; use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def window_logits(
    network: nn.Module, tensor: torch.Tensor, config: ModelConfig, precision: str = "fp32", with_coord: bool = False
) -> torch.Tensor:
    """Sliding-window logits of a (B, C, X, Y, Z) tensor with the config's patch size and blending.

    `with_coord=True` calls `network(windows, coords)` with MONAI's window slices (steering replays windows).
    When the GPU runs out of memory it retries with one window at a time, then stitches on the CPU, then
    (plain networks) runs on the CPU; the logits then come back on the CPU.
    """
    batch, stitch = int(config.sliding_window.get("batch_size", 1)), tensor.device
    while True:
        try:
            return _sliding_windows(network, tensor, config, precision, with_coord, batch, stitch)
        except memory.OutOfMemoryError:
            memory.free_gpu_memory()
            if batch > 1:
                batch = 1
                memory.notice("retrying with one sliding window at a time")
            elif stitch.type != "cpu":
                stitch = torch.device("cpu")
                memory.notice("stitching the sliding windows on the CPU")
            elif tensor.device.type != "cpu" and not with_coord:
                memory.notice("running this case on the CPU (slower)")
                device = next(network.parameters()).device
                memory.move_to_cpu(network)
                try:
                    return window_logits(network, tensor.cpu(), config, precision)
                finally:
                    network.to(device)
            else:
                raise ParameterError(
                    f"out of memory with one {list(config.patch_size)} window at a time on "
                    f"{tensor.device}; close other programs or use a model with a smaller patch size"
                ) from None


def _sliding_windows(
    network: nn.Module,
    tensor: torch.Tensor,
    config: ModelConfig,
    precision: str,
    with_coord: bool,
    batch: int,
    stitch: torch.device,
) -> torch.Tensor:
    window = config.sliding_window
    with torch.no_grad(), autocast(tensor.device, precision):
        out = sliding_window_inference(
            tensor,
            roi_size=config.patch_size,
            sw_batch_size=batch,
            predictor=network,
            overlap=float(window.get("overlap", 0.5)),
            mode=str(window.get("mode", "gaussian")),
            with_coord=with_coord,
            sw_device=tensor.device,
            device=stitch,
        )
    return torch.as_tensor(out).float()


class SegmentationModel:
    """A network with its config and weights fingerprint, ready for inference.

    On the CPU its 3D convolutions always run oneDNN (`cpu_convolution`: faster, same results to float
    rounding), unless `source_kernels` is set: imported models keep PyTorch's own choice, for
    bit-for-bit parity with their source's predictor.
    """

    source_kernels = False

    def __init__(
        self,
        network: nn.Module,
        config: ModelConfig,
        fingerprint: str,
        device=None,
        provenance: dict[str, Any] | None = None,
        model_dir: str | os.PathLike | None = None,
    ):
        self.config = config
        self.fingerprint = fingerprint
        self.provenance = provenance or {}
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.device = torch.device(device) if device is not None else default_device()
        self.network = network.to(self.device).eval()
        if self.device.type == "cpu" and not self.source_kernels:
            route_conv3d_to_onednn(self.network)

    def prepare(self, case: Case) -> PreparedInput:
        """The case's image on the model's grid, normalised, as a (1, C, X, Y, Z) tensor."""
        arrays = to_model_grid(case, self.config)
        tensor = torch.from_numpy(np.ascontiguousarray(arrays.image))[None].to(self.device)
        return PreparedInput(tensor, arrays.grid, case.grid, arrays.resampled, case.case_id)

    def logits(
        self, prepared: PreparedInput, network: nn.Module | None = None, precision: str = "fp32"
    ) -> torch.Tensor:
        """Full-volume logits (1, classes, X, Y, Z) on `prepared.grid`, by sliding windows."""
        return window_logits(network if network is not None else self.network, prepared.tensor, self.config, precision)

    def to_prediction(self, logits: torch.Tensor, prepared: PreparedInput, probabilities: bool = False) -> Prediction:
        """Labels (and optionally class probabilities) on the case's own canonical grid."""
        if not prepared.resampled and not probabilities:
            return Prediction(self._argmax_labels(logits[0]), prepared.case_grid, None, self.fingerprint)
        probs = torch.softmax(logits[0], dim=0).cpu().numpy()
        if prepared.resampled:
            probs = _resampled(probs, prepared.grid, prepared.case_grid)
        labels = channel_index_to_label(probs.argmax(0), self.config)
        return Prediction(
            labels, prepared.case_grid, probs.astype(np.float32) if probabilities else None, self.fingerprint
        )

    def labels_within(self, logits: torch.Tensor, prepared: PreparedInput, box: Box, labels: np.ndarray) -> np.ndarray:
        """`to_prediction(logits, prepared).labels`, given that `logits` differ from the logits that gave `labels`
        only inside `box` (of `prepared.grid`): only the case voxels the box reaches are recomputed (a steering
        update's cost then follows its region). A subclass with its own `to_prediction` takes the whole way."""
        if type(self).to_prediction is not SegmentationModel.to_prediction:
            return self.to_prediction(logits, prepared).labels
        out = labels.copy()
        if any(b.stop <= b.start for b in box):
            return out
        if not prepared.resampled:
            out[box] = self._argmax_labels(logits[0][(slice(None), *box)])
            return out
        target = linear_reach(prepared.grid, prepared.case_grid, box)
        if target is None:
            return out
        source = linear_support(prepared.grid, prepared.case_grid, target)
        # the softmax of the whole grid, cut after: the same float rounding as to_prediction's
        probs = torch.softmax(logits[0], dim=0)[(slice(None), *source)].cpu().numpy()
        probs = _resampled(probs, sub_grid(prepared.grid, source), sub_grid(prepared.case_grid, target))
        out[target] = channel_index_to_label(probs.argmax(0), self.config)
        return out

    def _argmax_labels(self, logits: torch.Tensor) -> np.ndarray:
        """Labels of (C, X, Y, Z) logits on their own grid."""
        index = logits.movedim(0, -1).contiguous().argmax(-1).cpu().numpy()  # ~10x faster than argmax(0) on CPU
        return channel_index_to_label(index, self.config)

    def predict(self, case: Case, probabilities: bool = False, precision: str = "fp32") -> Prediction:
        """Segment a case: labels (uint8, BraTS values) on `case.grid`."""
        prepared = self.prepare(case)
        return self.to_prediction(self.logits(prepared, precision=precision), prepared, probabilities)


def _resampled(probabilities: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """(C, ...) class probabilities on `source` -> on `target`, channel by channel (trilinear)."""
    return np.stack([resample_to_grid(p, source, target, order=1) for p in probabilities])


def load_model(model_dir: str | os.PathLike, device=None) -> SegmentationModel:
    """Load a model folder (hash-checked safetensors weights) onto `device` (GPU if present by default).

    A folder made by `medseglens import-model` (an nnU-Net or MONAI bundle model) loads as the matching
    `SegmentationModel` subclass, which feeds cases through its source's own preprocessing.
    """
    from .external.folder import is_imported_model, load_imported_model

    if is_imported_model(model_dir):
        return load_imported_model(model_dir, device=device)
    network, config, fingerprint, provenance = load_network(model_dir)
    return SegmentationModel(network, config, fingerprint, device=device, provenance=provenance, model_dir=model_dir)
