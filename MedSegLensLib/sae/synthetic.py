"""Activation rows with a known sparse dictionary, for tests and benchmarks.

Each row is offset + sum of a few planted unit-norm atoms with positive
magnitudes + noise. Atom usage follows a power law (a few atoms fire often, most
rarely), as latent firing frequencies do in real networks; the offset and the
overall scale are not 0 and 1, so centring and input scaling matter.
"""

from __future__ import annotations

import torch

from .rows import seeded_generator


def planted_rows(
    n_rows: int,
    d_in: int,
    n_atoms: int,
    active: int,
    dictionary_seed: int = 0,
    row_seed: int = 0,
    spread: float = 0.0,
    noise: float = 0.02,
    zipf: float = 0.6,
    scale: float = 3.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows n x d_in, atoms n_atoms x d_in): each row uses about `active` distinct atoms.

    With `spread` > 0 the count varies per row, uniformly within active * (1 +- spread),
    as voxels do (plain background needs few features, a tumour boundary many).

    The dictionary (atoms, offset, usage) depends on `dictionary_seed` only, so
    held-out rows from the same dictionary come from another `row_seed`.
    """
    gen = seeded_generator(dictionary_seed, d_in, n_atoms)
    atoms = torch.randn(n_atoms, d_in, generator=gen)
    atoms /= atoms.norm(dim=1, keepdim=True)
    offset = torch.randn(d_in, generator=gen)
    popularity = torch.arange(1, n_atoms + 1, dtype=torch.float64).pow(-zipf)
    popularity = popularity[torch.randperm(n_atoms, generator=gen)]
    gen = seeded_generator(dictionary_seed, row_seed, n_rows)
    low, high = max(1, round(active * (1 - spread))), max(1, round(active * (1 + spread)))
    chosen = torch.multinomial(popularity.expand(n_rows, n_atoms), high, replacement=False, generator=gen)
    magnitude = 0.5 + torch.rand(n_rows, high, generator=gen) * 1.5
    if high > low:
        count = torch.randint(low, high + 1, (n_rows, 1), generator=gen)
        magnitude *= torch.arange(high) < count
    rows = offset.expand(n_rows, d_in).clone()
    rows += torch.nn.functional.embedding_bag(chosen, atoms, mode="sum", per_sample_weights=magnitude)
    rows += noise * torch.randn(n_rows, d_in, generator=gen)
    return rows * scale, atoms
