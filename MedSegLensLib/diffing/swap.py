"""Feature swapping between two SAEs of one backbone layer (after matching their latents).

Population A's activations x are encoded with A's own SAE, the codes are moved to
the matched B latents and decoded with B's dictionary; the result is encoded again
with A's SAE:

    z = enc_A(x)     x_swap = dec_B(P z)     z' = enc_A(x_swap)

If latent i is truly shared (B has a latent pointing the same way), x_swap still
carries it and z'_i follows z_i; if B has no such direction, latent i is lost or
smeared into others. Per latent of A: Pearson r(z_i, z'_i) over all rows
("activation structure") and the mean over cases of the same r within each case's
voxels ("spatial correlation": the store's rows of a case are voxels of that case),
plus the share of the activation that is kept. Reconstruction quality: FVU of
dec_A(z) and of x_swap against x.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import CompatibilityError
from ..sae.model import SparseAutoencoder
from ..sae.sparse_ops import SparseCodes
from .matching import Matching
from .sparse_tally import PairedColumnTally


@dataclass
class SwapResult:
    """Per latent of the encoding SAE (A), after a round trip through the other SAE's (B) dictionary."""

    rows: int
    fvu_own: float
    fvu_swap: float
    partner: np.ndarray  # B latent each A latent was moved to (-1: none)
    partner_similarity: np.ndarray
    fired: np.ndarray  # rows where the A latent fired
    correlation: np.ndarray  # pooled r(z_i, z'_i); NaN where z_i never varies
    spatial_correlation: np.ndarray  # mean within-case r
    kept: np.ndarray  # sum z'_i / sum z_i

    def survives(self, min_r: float = 0.5) -> np.ndarray:
        return np.nan_to_num(self.correlation, nan=0.0) >= min_r


def to_csr(codes: SparseCodes, n_latents: int) -> sp.csr_matrix:
    return sp.csr_matrix(
        (codes.values.numpy().astype(np.float64), (codes.rows.numpy(), codes.latents.numpy())),
        shape=(codes.n_rows, n_latents),
    )


class _Variance:
    """Running sums for the total variance of x (FVU's denominator), shifted by the first batch's mean."""

    def __init__(self):
        self.shift = None
        self.n, self.total, self.squares = 0, 0.0, 0.0

    def add(self, x: torch.Tensor) -> None:
        x = x.double()
        if self.shift is None:
            self.shift = x.mean(0)
            self.total, self.squares = torch.zeros_like(self.shift), torch.zeros_like(self.shift)
        centred = x - self.shift
        self.n += x.shape[0]
        self.total += centred.sum(0)
        self.squares += (centred * centred).sum(0)

    def value(self) -> float:
        return float((self.squares - self.total * self.total / max(self.n, 1)).sum())


def swap_features(
    sae_a: SparseAutoencoder,
    sae_b: SparseAutoencoder,
    matching: Matching,
    batches: Iterable[tuple[torch.Tensor, np.ndarray]],
    n_cases: int,
    progress: Callable[[int], None] | None = None,
) -> SwapResult:
    """Run the swap over `batches` of (activation rows, case index per row) of population A."""
    if sae_a.d_in != sae_b.d_in:
        raise CompatibilityError(
            f"the SAEs take {sae_a.d_in} and {sae_b.d_in} channels; feature swapping needs two SAEs of one layer"
        )
    partner = matching.partner_of_a()
    similarity = np.full(sae_a.n_latents, np.nan)
    similarity[matching.a] = matching.similarity
    move = torch.as_tensor(partner)
    tally = PairedColumnTally(n_cases, sae_a.n_latents)
    variance, err_own, err_swap, done = _Variance(), 0.0, 0.0, 0
    with torch.no_grad():
        for x, case_index in batches:
            x = x.float()
            z = sae_a.encode_sparse(x)
            moved = move[z.latents]
            keep = moved >= 0
            z_b = SparseCodes(z.rows[keep], moved[keep], z.values[keep], z.n_rows)
            x_swap = sae_b.decode_sparse(z_b)
            z_again = sae_a.encode_sparse(x_swap)
            variance.add(x)
            err_own += float(((sae_a.decode_sparse(z) - x) ** 2).double().sum())
            err_swap += float(((x_swap - x) ** 2).double().sum())
            tally.add(to_csr(z, sae_a.n_latents), to_csr(z_again, sae_a.n_latents), np.asarray(case_index))
            done += x.shape[0]
            if progress is not None:
                progress(done)
    total_var = max(variance.value(), 1e-30)
    sum_a, sum_b = tally.sum_a.sum(0), tally.sum_b.sum(0)
    return SwapResult(
        rows=done,
        fvu_own=err_own / total_var,
        fvu_swap=err_swap / total_var,
        partner=partner,
        partner_similarity=similarity,
        fired=tally.nonzero_a.sum(0),
        correlation=tally.pooled(),
        spatial_correlation=tally.mean_within_case(),
        kept=np.divide(sum_b, sum_a, out=np.full(sae_a.n_latents, np.nan), where=sum_a > 0),
    )
