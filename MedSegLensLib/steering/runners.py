"""Re-running the network after the hooked layer, for a change of its output of the form sum_j c_j(x) d_j.

Every intervention (a latent's decoder direction, a mean-difference vector, a
random direction) adds rank-one terms to the layer output h: a coefficient map
c_j (one value per voxel) times a direction d_j (one value per channel).

- `SuffixRunner` adds the terms to h and runs the whole suffix: the network itself.
- `EntryRunner` is used when the suffix starts with a convolution of h (possibly
  concatenated with a skip connection), as in the U-Net's decoder: the
  convolution's output for the unsteered h is cached, and the terms are pushed
  through the convolution alone, with its weights contracted with each d_j (one
  input channel per term, no bias). By linearity the sum equals the convolution
  of the steered input up to float rounding, and zero terms change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.split import LinearEntry, SplitNetwork
from .frozen import FrozenRest, croppable, receptive_radius
from .reach import Reach, measure_reach, paste_into


@dataclass
class LocalUpdate:
    """Window logits recomputed exactly, only where a change reaches."""

    logits: torch.Tensor
    cropped: int  # windows recomputed on a crop smaller than the window


def add_terms(h: torch.Tensor, coefficients: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """h + sum_j c_j d_j for h (B, C, ...), coefficients (B, J, ...), directions (J, C)."""
    return h + torch.einsum("bj...,jc->bc...", coefficients, directions)


class SuffixRunner:
    """Runs the whole suffix on the steered layer output; on a crop around the change when the suffix is local."""

    def __init__(self, split: SplitNetwork, local: bool = True):
        self.split = split
        self._measure = local
        self.reach: Reach | None = None  # measured on the first recorded window (see steering/reach.py)

    def record(self, h: torch.Tensor, boundary: tuple) -> tuple[Any, None, torch.Tensor]:
        """(cache, statistics: none, logits) of the unsteered windows, from the prefix's outputs."""
        logits = self.split.suffix(h, *boundary)
        if self._measure:
            self._measure = False
            first = torch.zeros(1, dtype=torch.long)
            self.reach = measure_reach(self.split.suffix, h[:1], tuple(_select(boundary, first, h.shape[0])))
        return boundary, None, logits

    def cache_of(self, h: torch.Tensor, boundary: tuple) -> Any:
        """What `record` caches, without running the suffix (a dropped window's cache, rebuilt)."""
        return boundary

    def steered(
        self, h: torch.Tensor, cache: Any, coefficients: torch.Tensor, directions: torch.Tensor, windows: torch.Tensor
    ) -> torch.Tensor:
        """Logits of `windows` (indices into the batch) after the change; only those windows run."""
        boundary = _select(cache, windows, h.shape[0])
        return self.split.suffix(add_terms(_take(h, windows), _take(coefficients, windows), directions), *boundary)

    def steered_locally(
        self,
        h: torch.Tensor,
        cache: Any,
        stats: None,
        coefficients: torch.Tensor,
        directions: torch.Tensor,
        window_logits: torch.Tensor,
        windows: torch.Tensor,
    ) -> LocalUpdate | None:
        """Exact update of only the crop each window's change can reach; None when the suffix is not local."""
        if self.reach is None:
            return None
        boundary = tuple(_select(cache, windows, h.shape[0]))
        c = _take(coefficients, windows)
        steered = add_terms(_take(h, windows), c, directions)
        out = window_logits[windows].clone()
        spatial, cropped = tuple(h.shape[2:]), 0
        for b in range(len(windows)):
            nonzero = c[b].abs().amax(0).nonzero()
            if not len(nonzero):
                continue
            boxes = self.reach.boxes(nonzero.amin(0).tolist(), (nonzero.amax(0) + 1).tolist(), spatial)
            if boxes is None:
                one = torch.tensor([b])
                out[b] = self.split.suffix(steered[b : b + 1], *_select(boundary, one, len(windows)))[0]
            else:
                paste_into(out, b, self.split.suffix, self.reach, steered, boundary, *boxes)
                cropped += 1
        return LocalUpdate(out, cropped)


class EntryRunner:
    """Caches the suffix's leading convolution output and pushes steering terms through that convolution only."""

    def __init__(self, split: SplitNetwork, entry: LinearEntry):
        self.split = split
        self.entry = entry
        radius = receptive_radius(entry.rest)
        self.frozen = FrozenRest(entry.rest, radius) if radius is not None else None

    def record(self, h: torch.Tensor, boundary: tuple) -> tuple[Any, list | None, torch.Tensor]:
        """(cache: the entry output and the rest's other inputs, the rest's instance-norm statistics or None,
        logits) of the unsteered windows."""
        entry_out, rest_boundary = self.cache_of(h, boundary)
        if self.frozen is not None and croppable(self.entry.rest, rest_boundary, entry_out.shape[2:]):
            logits, stats = self.frozen.record(entry_out, rest_boundary)
        else:
            logits, stats = self.entry.rest(entry_out, *rest_boundary), None
        return (entry_out, rest_boundary), stats, logits

    def cache_of(self, h: torch.Tensor, boundary: tuple) -> tuple[torch.Tensor, tuple]:
        """What `record` caches, without running the rest (a dropped window's cache, rebuilt)."""
        entry_out, *rest_boundary = self.entry.entry(h, *boundary)
        return entry_out, tuple(rest_boundary)

    def steered(
        self, h: torch.Tensor, cache: Any, coefficients: torch.Tensor, directions: torch.Tensor, windows: torch.Tensor
    ) -> torch.Tensor:
        """Logits of `windows` (indices into the batch) after the change; only those windows run."""
        entry_out, rest_boundary = _select(cache, windows, h.shape[0])
        steered_in = self.push(_take(coefficients, windows), directions)
        steered_in += entry_out  # in place: one full-resolution allocation fewer
        return self.entry.rest(steered_in, *rest_boundary)

    @property
    def local_is_exact(self) -> bool:
        """True when the rest after the entry convolution has no instance norm: cropping it is exact."""
        return self.frozen is not None and not self.frozen.norm_names

    @property
    def previews(self) -> bool:
        """True when instance norm follows the entry convolution and the rest is local once its statistics are
        frozen: a region's update can be previewed on the case grid (`frozen.CasePreview`)."""
        return self.frozen is not None and bool(self.frozen.norm_names)

    def steered_locally(
        self,
        h: torch.Tensor,
        cache: Any,
        stats: list | None,
        coefficients: torch.Tensor,
        directions: torch.Tensor,
        window_logits: torch.Tensor,
        windows: torch.Tensor,
    ) -> LocalUpdate | None:
        """Exact update of only the voxels the change can reach, where the rest has no instance norm; else None."""
        if stats is None or not self.local_is_exact:
            return None
        entry_out, rest_boundary = _select(cache, windows, coefficients.shape[0])
        stats = _select(stats, windows, coefficients.shape[0])
        change = self.push(_take(coefficients, windows), directions)
        logits, cropped = self.frozen.patch(window_logits[windows], entry_out + change, change, stats, rest_boundary)
        return LocalUpdate(logits, cropped)

    def push(self, coefficients: torch.Tensor, directions: torch.Tensor, unpadded: bool = False) -> torch.Tensor:
        """The leading convolution's response to the terms alone (no bias); `unpadded`: a transposed convolution's
        whole response, without cutting its padding off (`push_box`)."""
        conv, e = self.entry.conv, self.entry
        weight = (
            conv.weight[:, e.offset : e.offset + e.channels]
            if not _transposed(conv)
            else conv.weight[e.offset : e.offset + e.channels]
        )
        if _transposed(conv):
            kernel = torch.einsum("co...,jc->jo...", weight, directions.to(weight.dtype))
            functional = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[coefficients.ndim - 2]
            padding, extra = (0, 0) if unpadded else (conv.padding, conv.output_padding)
            return functional(coefficients, kernel, None, conv.stride, padding, extra, 1, conv.dilation)
        kernel = torch.einsum("oc...,jc->oj...", weight, directions.to(weight.dtype))
        functional = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[coefficients.ndim - 2]
        return functional(coefficients, kernel, None, conv.stride, conv.padding, conv.dilation, 1)

    def push_box(self, coefficients: torch.Tensor, directions: torch.Tensor) -> tuple[tuple[slice, ...], torch.Tensor]:
        """`push` for one window (1, J, ...) computed only around the terms' nonzero box: (where in the window's
        entry output, the response there). Equal to `push` there (a linear map of zeros is zero elsewhere)."""
        conv, spatial = self.entry.conv, coefficients.shape[2:]
        nonzero = coefficients[0].abs().amax(0).nonzero()
        low, high = nonzero.amin(0).tolist(), (nonzero.amax(0) + 1).tolist()
        kernel = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        if _transposed(conv):  # output o = i * stride - padding + t * dilation: inputs outside [low, high) are zero
            out_size = [
                (n - 1) * s - 2 * p + k + q + 1
                for n, s, p, k, q in zip(spatial, conv.stride, conv.padding, kernel, conv.output_padding)
            ]
            start = [lo * s - p for lo, s, p in zip(low, conv.stride, conv.padding)]
        elif all(s == 1 for s in conv.stride) and not isinstance(conv.padding, str):  # output o reads from o - padding
            low = [max(0, lo - k) for lo, k in zip(low, kernel)]
            high = [min(n, hi + k) for hi, k, n in zip(high, kernel, spatial)]
            out_size = [n + 2 * p - k for n, p, k in zip(spatial, conv.padding, kernel)]
            start = low
        else:  # a strided convolution: the whole window
            response = self.push(coefficients, directions)
            return tuple(slice(0, n) for n in response.shape[2:]), response
        crop = coefficients[(slice(None), slice(None), *(slice(lo, hi) for lo, hi in zip(low, high)))]
        response = self.push(crop, directions, unpadded=_transposed(conv))
        keep = tuple(slice(max(0, -a), min(r, n - a)) for a, r, n in zip(start, response.shape[2:], out_size))
        where = tuple(slice(a + k.start, a + k.stop) for a, k in zip(start, keep))
        return where, response[(slice(None), slice(None), *keep)]


def _transposed(conv: nn.Module) -> bool:
    return isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))


def _take(tensor: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """The windows' rows of a batch tensor, without a copy when all windows are taken."""
    return tensor if len(windows) == tensor.shape[0] else tensor[windows]


def _select(value: Any, windows: torch.Tensor, batch: int) -> Any:
    """`value` restricted to some windows of its batch: tensors with a batch axis are indexed, the rest kept."""
    if isinstance(value, torch.Tensor):
        return _take(value, windows) if value.ndim and value.shape[0] == batch else value
    if isinstance(value, (tuple, list)):
        return type(value)(_select(v, windows, batch) for v in value)
    return value
