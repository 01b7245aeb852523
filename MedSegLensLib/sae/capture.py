"""Activation capture: a named layer's output for a whole case, on its own world grid.

    fmap = layer_features(model, case, "model.1.submodule.1")   # U-Net bottleneck
    fmap.features        # (C, d, h, w) float32 at the layer's resolution
    fmap.grid            # Grid: that map's voxel-to-RAS affine
    fmap.to_case_grid(fmap.features[0].numpy())   # trilinear, onto case.grid

Why sliding windows and not one whole-volume forward: the inference path is
`model.logits`, MONAI sliding windows with Gaussian blending. Both backbones
normalise per window (U-Net instance norm; the SegFormer's decoder instance norm
and its attention, whose context is the window), so a whole-volume forward would
compute other activations than the ones the segmentation used. The layer is
therefore hooked inside exactly the windows `model.logits` runs (same MONAI call,
same windows, same blending weights; the logits come out of the same pass) and the
windows' layer maps are blended on the layer's lattice (`stitch.py`).

Geometry: a layer of stride s puts its voxel j at model voxel s*j. That is where
the project's backbones centre it: every downsampling is a "same"-padded strided
convolution (kernel k, padding k//2: output j is centred on input s*j), and the
U-Net's transposed convolutions invert that. The layer grid's affine is the model
grid's with its axes scaled by s and the same origin (tested against the measured
receptive field of the U-Net's layers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.data.utils import compute_importance_map
from monai.inferers import sliding_window_inference
from scipy import ndimage
from torch import nn

from ..data import Case, Grid
from ..errors import ParameterError
from ..models.inference import PreparedInput, SegmentationModel, autocast
from .stitch import LatticeStitcher


@dataclass
class FeatureMap:
    """A layer's output over a whole case.

    features: (C, d, h, w) float32 on the CPU, on `grid`; stride: model voxels per
    layer voxel; model_grid: the grid the network saw; case_grid: the case's own
    canonical grid; logits: (1, classes, X, Y, Z) from the same pass, on model_grid.
    """

    features: torch.Tensor
    grid: Grid
    layer: str
    stride: tuple[float, float, float]
    model_grid: Grid
    case_grid: Grid
    model_fingerprint: str
    case_id: str = ""
    logits: torch.Tensor | None = None

    @property
    def channels(self) -> int:
        return int(self.features.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.features.shape[1:])

    def rows(self) -> torch.Tensor:
        """One row of C channels per layer voxel, in C order of (d, h, w)."""
        return self.features.reshape(self.channels, -1).T.contiguous()

    def case_voxels(self) -> np.ndarray:
        """(d, h, w, 3) int: the case-grid voxel under each layer voxel's centre (clipped to the case)."""
        return layer_voxels_in(self.grid, self.case_grid)

    def values_at_layer(self, volume: np.ndarray) -> np.ndarray:
        """A case-grid volume (e.g. the label map) read at each layer voxel's centre (nearest voxel)."""
        at = self.case_voxels()
        return volume[at[..., 0], at[..., 1], at[..., 2]]

    def to_case_grid(self, volume: np.ndarray, order: int = 1) -> np.ndarray:
        """A layer-grid volume (d, h, w) resampled onto the case grid (trilinear by default)."""
        return resample_layer_volume(volume, self.grid, self.case_grid, order)


def layer_grid(model_grid: Grid, stride, shape) -> Grid:
    """The world grid of a layer of `stride` over `model_grid`: voxel j at model voxel stride*j."""
    affine = np.array(model_grid.affine, dtype=float)
    affine[:3, :3] = affine[:3, :3] * np.asarray(stride, dtype=float)[None, :]
    return Grid(tuple(int(s) for s in shape), affine)


def layer_voxels_in(grid: Grid, target: Grid) -> np.ndarray:
    """(d, h, w, 3) int voxel indices of `target` nearest to each voxel centre of `grid` (clipped)."""
    mapping = np.linalg.inv(target.affine) @ grid.affine
    axes = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    points = np.stack([a.reshape(-1) for a in axes] + [np.ones(axes[0].size)])
    voxels = np.rint(mapping[:3] @ points).astype(np.int64)
    voxels = np.clip(voxels, 0, np.asarray(target.shape)[:, None] - 1)
    return voxels.T.reshape(*grid.shape, 3)


def resample_layer_volume(volume: np.ndarray, source: Grid, target: Grid, order: int = 1) -> np.ndarray:
    """Resample a (d, h, w) layer map onto `target`; edge voxels extend outwards (no dark rim)."""
    if tuple(volume.shape) != tuple(source.shape):
        raise ParameterError(f"volume of shape {tuple(volume.shape)} is not on the layer grid {tuple(source.shape)}")
    mapping = np.linalg.inv(source.affine) @ target.affine
    out = ndimage.affine_transform(
        np.asarray(volume, dtype=np.float32),
        mapping[:3, :3],
        offset=mapping[:3, 3],
        output_shape=tuple(target.shape),
        order=order,
        mode="nearest",
    )
    return out.astype(np.float32, copy=False)


def find_layer(network: nn.Module, layer: str) -> nn.Module:
    """The named module, or a one-line error listing the hookable blocks."""
    modules = dict(network.named_modules())
    if layer in modules and layer:
        return modules[layer]
    from ..models.layers import block_names

    blocks = block_names(network) or [(name, "") for name in list(modules)[1:12]]
    raise ParameterError(
        f"layer {layer!r} is not in this {type(network).__name__}; hookable layers include "
        f"{', '.join(name for name, _ in blocks)} (see `medseglens layers --model MODEL_DIR`)"
    )


def _prepared(model: SegmentationModel, case_or_prepared: Case | PreparedInput) -> PreparedInput:
    if isinstance(case_or_prepared, PreparedInput):
        return case_or_prepared
    return model.prepare(case_or_prepared)


def _pad_before(image_size: tuple[int, ...], roi: tuple[int, ...]) -> tuple[int, ...]:
    """The front padding MONAI's sliding window adds when the input is smaller than a window."""
    return tuple(max(r - s, 0) // 2 for s, r in zip(image_size, roi))


@torch.no_grad()
def layer_feature_maps(
    model: SegmentationModel,
    case_or_prepared: Case | PreparedInput,
    layers: Sequence[str],
    precision: str = "fp32",
) -> dict[str, FeatureMap]:
    """Several layers' maps over the whole case from one sliding-window pass (the one `model.logits` runs)."""
    prepared = _prepared(model, case_or_prepared)
    network, config = model.network, model.config
    modules = {layer: find_layer(network, layer) for layer in dict.fromkeys(layers)}
    window = config.sliding_window
    image_size = tuple(int(s) for s in prepared.tensor.shape[2:])
    roi = tuple(int(p) for p in config.patch_size)
    mode = str(window.get("mode", "gaussian"))
    importance = compute_importance_map(roi, mode=mode, sigma_scale=0.125, device="cpu", dtype=torch.float32)
    stitchers = {layer: LatticeStitcher(image_size, _pad_before(image_size, roi), roi, importance) for layer in modules}
    outputs: dict[str, list[torch.Tensor]] = {layer: [] for layer in modules}

    def hook_for(layer: str):
        def hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor) or output.ndim != 5:
                raise ParameterError(f"layer {layer!r} does not output a (batch, C, X, Y, Z) map; pick a spatial layer")
            outputs[layer].append(output)

        return hook

    def predictor(windows: torch.Tensor, coords) -> torch.Tensor:
        for seen in outputs.values():
            seen.clear()
        logits = network(windows)
        for layer, seen in outputs.items():
            if len(seen) != 1:
                raise ParameterError(
                    f"layer {layer!r} ran {len(seen)} times in one forward pass; hook a module used once"
                )
            for index, where in enumerate(coords):
                stitchers[layer].add([where[axis].start for axis in range(2, 5)], seen[0][index])
        return logits

    handles = [module.register_forward_hook(hook_for(layer)) for layer, module in modules.items()]
    try:
        with autocast(prepared.tensor.device, precision):
            logits = sliding_window_inference(
                prepared.tensor,
                roi_size=roi,
                sw_batch_size=int(window.get("batch_size", 1)),
                predictor=predictor,
                overlap=float(window.get("overlap", 0.5)),
                mode=mode,
                with_coord=True,
            )
    finally:
        for handle in handles:
            handle.remove()
    logits = torch.as_tensor(logits).float()
    maps = {}
    for layer, stitcher in stitchers.items():
        features = stitcher.result()
        maps[layer] = FeatureMap(
            features=features,
            grid=layer_grid(prepared.grid, stitcher.stride, features.shape[1:]),
            layer=layer,
            stride=stitcher.stride,
            model_grid=prepared.grid,
            case_grid=prepared.case_grid,
            model_fingerprint=model.fingerprint,
            case_id=prepared.case_id,
            logits=logits,
        )
    return maps


def layer_features(
    model: SegmentationModel,
    case_or_prepared: Case | PreparedInput,
    layer: str,
    precision: str = "fp32",
) -> FeatureMap:
    """The hooked layer's output over the whole case, from the same windows as `model.logits`."""
    return layer_feature_maps(model, case_or_prepared, [layer], precision)[layer]


@torch.no_grad()
def layer_channels(model: SegmentationModel, layer: str) -> int:
    """Channels of the layer's output, from one forward pass of a zero patch."""
    seen = []
    handle = find_layer(model.network, layer).register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        model.network(torch.zeros(1, model.config.in_channels, *model.config.patch_size, device=model.device))
    finally:
        handle.remove()
    if not seen or not isinstance(seen[0], torch.Tensor) or seen[0].ndim != 5:
        raise ParameterError(f"layer {layer!r} does not output a (batch, C, X, Y, Z) map; pick a spatial layer")
    return int(seen[0].shape[1])
