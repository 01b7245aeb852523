"""Replace a layer's output inside the network, in every sliding window.

    with replaced_output(model.network, layer, sae_reconstruction(sae)):
        logits = model.logits(prepared)        # the rest of the network sees the SAE's reconstruction

A forward hook that returns a value replaces the module's output, so everything
after the layer (skip connections included) runs on the replacement, window by
window, with the same blending as an ordinary `model.logits` call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from .capture import find_layer
from .encode import CHUNK_ENTRIES
from .model import SparseAutoencoder

Transform = Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def replaced_output(network: nn.Module, layer: str, transform: Transform) -> Iterator[None]:
    """While active, the named layer's (B, C, X, Y, Z) output is replaced by `transform(output)`."""
    handle = find_layer(network, layer).register_forward_hook(lambda _m, _i, output: transform(output))
    try:
        yield
    finally:
        handle.remove()


def sae_reconstruction(sae: SparseAutoencoder) -> Transform:
    """Each voxel's C channels -> the SAE's reconstruction of them (encoded on their own, no batch)."""

    @torch.no_grad()
    def transform(output: torch.Tensor) -> torch.Tensor:
        batch, channels = output.shape[:2]
        rows = output.movedim(1, -1).reshape(-1, channels).float()
        chunk = max(256, CHUNK_ENTRIES // sae.n_latents)
        recon = torch.cat([sae(rows[start : start + chunk]) for start in range(0, rows.shape[0], chunk)])
        return recon.reshape(batch, *output.shape[2:], channels).movedim(-1, 1).to(output.dtype).contiguous()

    return transform


def zero_ablation(output: torch.Tensor) -> torch.Tensor:
    """The layer's output replaced by zeros (the reference point of Dice recovered)."""
    return torch.zeros_like(output)
