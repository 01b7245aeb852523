"""Reductions over the parts of one training batch; a single process is the identity.

Training normalises its loss by the whole batch's variance, cuts BatchTopK over the
whole batch and counts dead latents over the whole batch. When data-parallel ranks
each hold a slice of the batch (`MedSegLensLib.distributed`), these quantities are
sums and a gather over ranks; the single-process `LOCAL` reducer returns its input.
"""

from __future__ import annotations

import torch


class Reducer:
    """Single process: every collective is the identity."""

    rank = 0
    world_size = 1

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of `tensor` over ranks (a new tensor where ranks exist)."""
        return tensor

    def min(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise minimum of `tensor` over ranks."""
        return tensor

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """1-D `values` of every rank, concatenated in rank order."""
        return values


LOCAL = Reducer()
