"""The sliding windows of `model.logits`, recorded once and replayed after each steering change.

The session runs MONAI's `sliding_window_inference` exactly as inference does
(same windows, batches and Gaussian blending; `window_logits(..., with_coord=True)`),
so its unsteered output is bit for bit the one `model.predict` gives. The first
pass records each batch of windows; later passes hand MONAI the recomputed (or
cached) window logits in the same order, and MONAI blends them again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data.utils import compute_importance_map

from ..data.geometry import Box
from ..models.inference import window_logits

WindowPart = tuple[int, int, Box, torch.Tensor]  # (batch, window, box in the window, values (1, C, *box))


@dataclass
class WindowBatch:
    """One batch of windows as MONAI handed it over: spatial slices (padded image), its logits, the instance-norm
    statistics of the rest (or None), and `tensors()`: the layer output h and what the suffix reads, held by the
    session's `WindowCache` (rebuilt when dropped)."""

    slices: list[tuple[slice, slice, slice]]
    logits: torch.Tensor
    stats: Any
    tensors: Callable[[], tuple[torch.Tensor, Any]]
    codes: dict[tuple[int, ...], torch.Tensor] = field(default_factory=dict)

    @property
    def h(self) -> torch.Tensor:
        return self.tensors()[0]

    @property
    def cache(self) -> Any:
        return self.tensors()[1]


def spatial_slices(coords: Sequence[Sequence[slice]]) -> list[tuple[slice, slice, slice]]:
    """MONAI's per-window slices [batch, channel, x, y, z] -> the spatial part."""
    return [tuple(window[2:]) for window in coords]


def run_windows(tensor: torch.Tensor, config, predictor: Callable[[torch.Tensor, list], torch.Tensor]) -> torch.Tensor:
    """Blended logits of `predictor(window_batch, coords)` over the windows `model.logits` uses."""
    module = _CoordPredictor(predictor)
    return window_logits(module, tensor, config, with_coord=True)


class _CoordPredictor(torch.nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, windows: torch.Tensor, coords: list) -> torch.Tensor:
        return self.function(windows, coords)


def monai_padding(image_shape: Sequence[int], roi: Sequence[int]) -> list[tuple[int, int]]:
    """(before, after) padding per axis that sliding_window_inference adds to an image smaller than a window."""
    pads = []
    for size, window in zip(image_shape, roi):
        diff = max(int(window) - int(size), 0)
        pads.append((diff // 2, diff - diff // 2))
    return pads


def padded(volume: np.ndarray, pads: list[tuple[int, int]]) -> np.ndarray:
    return np.pad(volume, pads) if any(a or b for a, b in pads) else volume


def layer_gate(region: torch.Tensor, slices: list[tuple[slice, slice, slice]], stride: Sequence[int]) -> torch.Tensor:
    """The region (padded model grid, float 0/1) on each window's layer lattice: (B, 1, d, h, w).

    Window-local layer voxel j sits on window voxel stride * j (the backbones' "same"-padded
    strided convolutions centre it there), so a layer voxel is gated when the region touches
    the stride-wide neighbourhood around that voxel.
    """
    crops = torch.stack([region[window] for window in slices])[:, None]
    kernel = [2 * (s // 2) + 1 for s in stride]
    return F.max_pool3d(crops, kernel_size=kernel, stride=list(stride), padding=[s // 2 for s in stride])


class Blender:
    """MONAI's window blending, applied incrementally: only changed windows touch the output.

    logits = sum_w weight * y_w / sum_w weight over the windows covering a voxel, so changing
    window w adds weight * (y_new - y_old) / count over its slice. Equal to a full MONAI pass up
    to float rounding (tested); the unsteered logits stay MONAI's own.
    """

    def __init__(self, logits: torch.Tensor, batches: list[WindowBatch], config, pads: list[tuple[int, int]]):
        window = config.sliding_window
        roi = tuple(int(s) for s in config.patch_size)
        self.importance = compute_importance_map(
            roi, mode=str(window.get("mode", "gaussian")), sigma_scale=0.125, device=logits.device, dtype=logits.dtype
        )
        self.pads = pads
        self.inner = tuple(slice(before, before + size) for (before, _), size in zip(pads, logits.shape[2:]))
        padded_shape = tuple(size + a + b for size, (a, b) in zip(logits.shape[2:], pads))
        count = torch.zeros(padded_shape, dtype=logits.dtype, device=logits.device)
        for batch in batches:
            for window in batch.slices:
                count[window] += self.importance
        self.weight_over_count = [[self.importance / count[window] for window in batch.slices] for batch in batches]
        self.base = torch.zeros((logits.shape[1], *padded_shape), dtype=logits.dtype, device=logits.device)
        self.base[(slice(None), *self.inner)] = logits[0]

    def blend(
        self, changes: list[tuple[int, int, torch.Tensor, torch.Tensor]], batches: list[WindowBatch]
    ) -> tuple[torch.Tensor, Box | None]:
        """(logits (1, K, ...) after replacing window (batch, index)'s output `old` by `new`, the box of the padded
        grid where they changed or None)."""
        out = self.base.clone()
        boxes = []
        for b, w, old, new in changes:
            window = batches[b].slices[w]
            change = new - old
            local = nonzero_box(change)
            if local is None:
                continue
            change *= self.weight_over_count[b][w]
            out[(slice(None), *window)] += change
            boxes.append(_on_grid(window, local))
        return out[(slice(None), *self.inner)][None], enclosing_box(boxes)

    @property
    def shape(self) -> tuple[int, ...]:
        """The padded case grid the windows tile."""
        return tuple(self.base.shape[1:])

    def blend_box(self, parts: list[WindowPart], batches: list[WindowBatch], box: Box) -> torch.Tensor:
        """(1, C, *box): window values blended over `box` of the padded case grid with the logits' weights.

        Each part is (batch, window, slices in the window, values (1, C, *those slices)); voxels of the box no part
        covers are zero.
        """
        out = box_zeros(parts[0][3], box)
        for part in parts:
            self.add_part(out, part, batches, box)
        return out

    def add_part(self, out: torch.Tensor, part: WindowPart, batches: list[WindowBatch], box: Box) -> None:
        """out (1, C, *box) += one window's values with the logits' weights (`blend_box`, one part at a time)."""
        b, w, local, values = part
        window = batches[b].slices[w]
        at = tuple(
            slice(s.start + c.start - x.start, s.start + c.stop - x.start) for s, c, x in zip(window, local, box)
        )
        out[(slice(None), slice(None), *at)] += values * self.weight_over_count[b][w][local]

    def parts_over(self, box: Box, batches: list[WindowBatch]) -> list[tuple[int, int, Box]]:
        """(batch, window, slices in the window) of every window that overlaps `box` of the padded case grid."""
        parts = []
        for b, batch in enumerate(batches):
            for w, window in enumerate(batch.slices):
                local = tuple(
                    slice(max(x.start, s.start) - s.start, min(x.stop, s.stop) - s.start) for s, x in zip(window, box)
                )
                if all(c.stop > c.start for c in local):
                    parts.append((b, w, local))
        return parts

    def with_change(self, box: Box, change: torch.Tensor) -> torch.Tensor:
        """Logits (1, K, ...) of the case: the unsteered ones plus `change` (1, K, *box) over `box` (padded grid)."""
        out = self.base.clone()
        out[(slice(None), *box)] += change[0]
        return out[(slice(None), *self.inner)][None]


def box_zeros(like: torch.Tensor, box: Box) -> torch.Tensor:
    """Zeros (1, C, *box) with the channels and dtype of `like` (1, C, ...)."""
    return torch.zeros((1, like.shape[1], *(b.stop - b.start for b in box)), dtype=like.dtype)


def union_box(parts: list[WindowPart], batches: list[WindowBatch]) -> Box:
    """The smallest box of the padded case grid that holds every part."""
    return enclosing_box([_on_grid(batches[b].slices[w], local) for b, w, local, _ in parts])


def nonzero_box(values: torch.Tensor) -> Box | None:
    """The smallest box holding every non-zero voxel of (C, X, Y, Z) values; None when all are zero."""
    mask = values.ne(0).any(0)
    if not bool(mask.any()):
        return None
    axes = [mask.any(dim=others).nonzero().squeeze(1) for others in ((1, 2), (0, 2), (0, 1))]
    return tuple(slice(int(i[0]), int(i[-1]) + 1) for i in axes)


def enclosing_box(boxes: list[Box]) -> Box | None:
    """The smallest box that holds every box; None for none."""
    if not boxes:
        return None
    return tuple(slice(min(b.start for b in axis), max(b.stop for b in axis)) for axis in zip(*boxes))


def _on_grid(window: Box, local: Box) -> Box:
    """A box in a window's voxels -> the same voxels in the padded case grid."""
    return tuple(slice(s.start + c.start, s.start + c.stop) for s, c in zip(window, local))
