"""Stitch a layer's per-window outputs into one map at the layer's resolution.

Sliding-window inference blends overlapping windows with an importance map
(MONAI's Gaussian). A hooked layer of stride s sees each window on the window's
own lattice: local voxel j sits at model voxel P + s*j for a window starting at P.
When P is not a multiple of s (windows placed every `roi*(1-overlap)` voxels, the
last one flush with the border) that lattice is shifted by a fraction of a layer
voxel from the global one (voxel g at model voxel s*g). MONAI's own multi-
resolution stitching rounds such offsets down; here each window's map (and its
weight) is linearly interpolated onto the global lattice instead, so every value
lands where the network computed it. Integer offsets reduce to plain slicing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError


def _axis_interpolation(
    offset: float, n_local: int, n_global: int, at_start: bool, at_end: bool
) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Global range start and, per covered global voxel, the two local neighbours and the weight of the second.

    A window covers the global voxels between its first and last local voxel. A
    window flush with the image border also covers the global voxels beyond it up
    to the border (no other window reaches them), with its border value repeated.
    """
    lo = 0 if at_start else max(0, math.ceil(offset - 1e-9))
    hi = n_global - 1 if at_end else min(n_global - 1, math.floor(offset + n_local - 1 + 1e-9))
    local = np.clip(np.arange(lo, hi + 1) - offset, 0.0, n_local - 1)
    j0 = np.floor(local + 1e-9).astype(np.int64).clip(0, n_local - 1)
    frac = np.where(local - j0 > 1e-9, local - j0, 0.0)
    j1 = np.minimum(j0 + 1, n_local - 1)
    return lo, torch.from_numpy(j0), torch.from_numpy(j1), torch.from_numpy(frac).float()


def _shift(volume: torch.Tensor, axis: int, j0: torch.Tensor, j1: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of `volume` along `axis` at local positions j0 + frac."""
    first = volume.index_select(axis, j0)
    if not bool((frac > 0).any()):
        return first
    shape = [1] * volume.ndim
    shape[axis] = -1
    weight = frac.view(shape)
    return first * (1 - weight) + volume.index_select(axis, j1) * weight


class LatticeStitcher:
    """Accumulates importance-weighted window maps of one layer on the global layer lattice.

    image_size: spatial size of the (unpadded) model-grid input; pad_before: the
    padding MONAI added in front of each axis when the input is smaller than a
    window; roi: the window size; importance: the window's weight map (roi sized).
    """

    def __init__(
        self, image_size: Sequence[int], pad_before: Sequence[int], roi: Sequence[int], importance: torch.Tensor
    ):
        self.image_size = tuple(int(s) for s in image_size)
        self.pad_before = tuple(int(p) for p in pad_before)
        self.roi = tuple(int(r) for r in roi)
        self.importance = importance.float().cpu()
        self.stride: tuple[float, float, float] | None = None
        self.total: torch.Tensor | None = None
        self.weight: torch.Tensor | None = None
        self._window_weight: torch.Tensor | None = None

    def _start(self, window: torch.Tensor) -> None:
        local = tuple(int(n) for n in window.shape[1:])
        self.stride = tuple(r / n for r, n in zip(self.roi, local))
        shape = tuple(max(1, math.ceil(size / s - 1e-6)) for size, s in zip(self.image_size, self.stride))
        self.total = torch.zeros((window.shape[0], *shape), dtype=torch.float32)
        self.weight = torch.zeros(shape, dtype=torch.float32)
        # the window's weights at the layer's resolution, as MONAI computes them for multi-resolution outputs
        self._window_weight = F.interpolate(self.importance[None, None], size=local, mode="nearest-exact")[0]

    def add(self, start: Sequence[int], window: torch.Tensor) -> None:
        """One window's layer output (C, n0, n1, n2) whose input window starts at `start` (padded coordinates)."""
        if self.total is None:
            self._start(window)
        if tuple(window.shape[1:]) != tuple(self._window_weight.shape[1:]):
            raise ValueError(
                f"window maps changed shape: {tuple(window.shape[1:])} vs {tuple(self._window_weight.shape[1:])}"
            )
        values, weight = window.float().cpu(), self._window_weight
        target = []
        for axis in range(3):  # resample the window's map (and its weights) onto the global lattice
            first = int(start[axis]) - self.pad_before[axis]  # model voxel of the window's first voxel
            at_start, at_end = first <= 0, first + self.roi[axis] >= self.image_size[axis]
            lo, j0, j1, frac = _axis_interpolation(
                first / self.stride[axis], window.shape[axis + 1], self.total.shape[axis + 1], at_start, at_end
            )
            values = _shift(values, axis + 1, j0, j1, frac)
            weight = _shift(weight, axis + 1, j0, j1, frac)
            target.append(slice(lo, lo + j0.numel()))
        self.total[(slice(None), *target)] += values * weight
        self.weight[tuple(target)] += weight[0]

    def result(self) -> torch.Tensor:
        """The blended map (C, N0, N1, N2)."""
        if self.total is None:
            raise ValueError("no window was added")
        if bool((self.weight <= 0).any()):
            raise ParameterError(
                "the sliding windows leave layer voxels uncovered; use an overlap > 0 and a patch size "
                "divisible by the layer's stride"
            )
        return self.total / self.weight.clamp_min(1e-12)
