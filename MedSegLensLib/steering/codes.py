"""The SAE's view of a layer output: chosen latents' codes per voxel and their decoder directions."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ParameterError
from ..sae import SparseAutoencoder

CHUNK_ROWS = 65_536


def decoder_directions(sae: SparseAutoencoder, latents: Sequence[int]) -> torch.Tensor:
    """(J, C): latent j's decoder row in the layer's own (unscaled) units: one unit of code adds this to h."""
    return (sae.W_dec[list(latents)] / sae.input_scale).detach().float()


@torch.no_grad()
def latent_codes(sae: SparseAutoencoder, h: torch.Tensor, latents: Sequence[int]) -> torch.Tensor:
    """Codes z_j of `latents` at every voxel of h (B, C, d, h, w): (B, J, d, h, w), as `sae.encode` gives them.

    A threshold (BatchTopK) SAE needs only the chosen latents' pre-activations; a TopK SAE
    must rank all latents of each voxel first.
    """
    batch, channels, *spatial = h.shape
    rows = h.movedim(1, -1).reshape(-1, channels)
    chosen = torch.as_tensor(list(latents), dtype=torch.long)
    if sae.config.kind != "topk" and float(sae.threshold) <= 0:
        raise ParameterError("this BatchTopK SAE has no learned threshold yet; train it before steering with it")
    parts = []
    for start in range(0, rows.shape[0], CHUNK_ROWS):
        chunk = rows[start : start + CHUNK_ROWS]
        if sae.config.kind == "topk":
            parts.append(sae.encode(chunk)[:, chosen])
        else:
            pre = torch.addmm(sae.b_enc[chosen], chunk * sae.input_scale - sae.b_dec, sae.W_enc[chosen].t())
            parts.append(pre * (pre > max(float(sae.threshold), 0.0)))
    codes = torch.cat(parts)
    return codes.reshape(batch, *spatial, len(chosen)).movedim(-1, 1).contiguous()
