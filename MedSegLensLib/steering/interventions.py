"""Coefficient maps of an intervention: how much of each direction to add at each voxel of a window batch.

With z_j the latent's code, a_j its typical activation, s_j the strength and g the
region gate (1 inside, 0 outside; 1 everywhere without a region):
    additive         c_j = s_j * a_j * g
    multiplicative   c_j = (s_j - 1) * z_j * g        (keeps the SAE's reconstruction error)
    clamp            c_j = (s_j * a_j - z_j) * g      (z_j becomes s_j * a_j)
The layer output becomes h + sum_j c_j d_j.
"""

from __future__ import annotations

import torch


def coefficient_maps(
    mode: str,
    strengths: torch.Tensor,
    spatial: tuple[int, ...],
    batch: int,
    typical: torch.Tensor | None = None,
    codes: torch.Tensor | None = None,
    gate: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, J, *spatial) coefficients for `mode` ('additive', 'multiplicative', 'clamp')."""
    view = (1, -1) + (1,) * len(spatial)
    if mode == "additive":
        base = (strengths * typical).view(view).expand(batch, -1, *spatial)
    elif mode == "multiplicative":
        base = (strengths - 1).view(view) * codes
    elif mode == "clamp":
        base = (strengths * typical).view(view) - codes
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return base * gate if gate is not None else base.contiguous()
