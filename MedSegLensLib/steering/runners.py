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

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.split import LinearEntry, SplitNetwork
from .frozen import FrozenRest, croppable, receptive_radius


def add_terms(h: torch.Tensor, coefficients: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """h + sum_j c_j d_j for h (B, C, ...), coefficients (B, J, ...), directions (J, C)."""
    return h + torch.einsum("bj...,jc->bc...", coefficients, directions)


class SuffixRunner:
    """Runs the whole suffix on the steered layer output."""

    def __init__(self, split: SplitNetwork):
        self.split = split

    def record(self, h: torch.Tensor, boundary: tuple) -> tuple[Any, torch.Tensor]:
        """(cache, logits) of the unsteered windows, from the prefix's outputs."""
        return boundary, self.split.suffix(h, *boundary)

    def steered(self, h: torch.Tensor, cache: Any, coefficients: torch.Tensor, directions: torch.Tensor,
                windows: torch.Tensor) -> torch.Tensor:
        """Logits of `windows` (indices into the batch) after the change; the whole batch runs, as it was recorded."""
        return self.split.suffix(add_terms(h, coefficients, directions), *cache)[windows]

    def steered_locally(self, cache: Any, coefficients: torch.Tensor, directions: torch.Tensor,
                        window_logits: torch.Tensor, windows: torch.Tensor) -> None:
        """Not available: the whole suffix depends on every voxel through its normalisations."""
        return None


class EntryRunner:
    """Caches the suffix's leading convolution output and pushes steering terms through that convolution only."""

    def __init__(self, split: SplitNetwork, entry: LinearEntry):
        self.split = split
        self.entry = entry
        radius = receptive_radius(entry.rest)
        self.frozen = FrozenRest(entry.rest, radius) if radius is not None else None

    def record(self, h: torch.Tensor, boundary: tuple) -> tuple[Any, torch.Tensor]:
        entry_out, *rest_boundary = self.entry.entry(h, *boundary)
        rest_boundary = tuple(rest_boundary)
        if self.frozen is not None and croppable(self.entry.rest, rest_boundary, entry_out.shape[2:]):
            logits, stats = self.frozen.record(entry_out, rest_boundary)
        else:
            logits, stats = self.entry.rest(entry_out, *rest_boundary), None
        return (entry_out, rest_boundary, stats), logits

    def steered(self, h: torch.Tensor, cache: Any, coefficients: torch.Tensor, directions: torch.Tensor,
                windows: torch.Tensor) -> torch.Tensor:
        """Logits of `windows` (indices into the batch) after the change; only those windows run."""
        entry_out, rest_boundary, _ = _select(cache, windows, h.shape[0])
        steered_in = self.push(_take(coefficients, windows), directions)
        steered_in += entry_out  # in place: one full-resolution allocation fewer
        return self.entry.rest(steered_in, *rest_boundary)

    def steered_locally(self, cache: Any, coefficients: torch.Tensor, directions: torch.Tensor,
                        window_logits: torch.Tensor, windows: torch.Tensor) -> torch.Tensor | None:
        """Frozen-statistics update of only the voxels the change can reach; None when the rest is not local."""
        entry_out, rest_boundary, stats = _select(cache, windows, coefficients.shape[0])
        if stats is None:
            return None
        change = self.push(_take(coefficients, windows), directions)
        return self.frozen.patch(window_logits[windows], entry_out + change, change, stats, rest_boundary)

    def push(self, coefficients: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """The leading convolution's response to the terms alone (no bias)."""
        conv, e = self.entry.conv, self.entry
        weight = conv.weight[:, e.offset:e.offset + e.channels] if not _transposed(conv) else \
            conv.weight[e.offset:e.offset + e.channels]
        if _transposed(conv):
            kernel = torch.einsum("co...,jc->jo...", weight, directions.to(weight.dtype))
            functional = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[coefficients.ndim - 2]
            return functional(coefficients, kernel, None, conv.stride, conv.padding, conv.output_padding, 1, conv.dilation)
        kernel = torch.einsum("oc...,jc->oj...", weight, directions.to(weight.dtype))
        functional = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[coefficients.ndim - 2]
        return functional(coefficients, kernel, None, conv.stride, conv.padding, conv.dilation, 1)


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
