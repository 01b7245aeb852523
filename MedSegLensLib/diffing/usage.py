"""How often and how strongly each latent fires, per case and tissue stratum, from an activation store.

Everything the population comparison needs reduces to three per-(case, stratum)
tallies: rows seen, rows where latent j fired, and the summed activation of j. They
are accumulated in one streaming pass over the store with the SAE's sparse codes, so
a store larger than memory works and the bootstrap later resamples whole cases from
these tallies without touching the activations again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import CompatibilityError
from ..sae.model import SparseAutoencoder
from ..sae.store import ActivationStore
from ..sae.strata import STRATA


@dataclass
class LatentUsage:
    """Per case c, stratum s, latent j: `rows[c, s]`, `fired[c, s, j]` and `activation[c, s, j]` (sum of codes)."""

    case_ids: list[str]
    populations: np.ndarray  # population of each case (str)
    rows: np.ndarray  # (cases, strata) float64
    fired: np.ndarray  # (cases, strata, latents) float32 (exact counts up to 2**24 per cell)
    activation: np.ndarray  # (cases, strata, latents) float64
    strata: tuple[str, ...] = STRATA
    source: dict = field(default_factory=dict)

    @property
    def n_latents(self) -> int:
        return self.fired.shape[2]

    def population_names(self) -> list[str]:
        return sorted(set(self.populations.tolist()))

    def stratum_frequency(self, population: str) -> np.ndarray:
        """(strata, latents) firing frequency pooled over the population's cases; NaN where no rows."""
        members = self.populations == population
        rows = self.rows[members].sum(0)
        fired = self.fired[members].sum(0, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(rows[:, None] > 0, fired / rows[:, None], np.nan)

    def mean_activation_when_firing(self) -> np.ndarray:
        """Per latent, the mean code over all rows where it fired (0 for latents that never fired)."""
        fired = self.fired.sum((0, 1), dtype=np.float64)
        total = self.activation.sum((0, 1))
        return np.divide(total, fired, out=np.zeros_like(total), where=fired > 0)


def accumulate_usage(
    sae: SparseAutoencoder,
    store: ActivationStore,
    batch_size: int = 8192,
    progress: Callable[[int, int], None] | None = None,
) -> LatentUsage:
    """One pass over `store`: encode every row with `sae` and tally firing per (case, stratum, latent)."""
    if store.d_in != sae.d_in:
        raise CompatibilityError(
            f"{store.path}: store rows have {store.d_in} channels but the SAE takes {sae.d_in}; "
            "use the SAE trained on this store's model and layer"
        )
    cases = store.cases
    n_cases, n_strata, n_latents = len(cases), len(STRATA), sae.n_latents
    rows = torch.zeros(n_cases * n_strata, dtype=torch.float64)
    fired = torch.zeros(n_cases * n_strata * n_latents, dtype=torch.float32)
    activation = torch.zeros(n_cases * n_strata * n_latents, dtype=torch.float64)
    done = 0
    with torch.no_grad():
        for batch, meta in store.scan_with_metadata(batch_size):
            cell = meta["case_index"].long() * n_strata + meta["stratum"].long()
            rows.index_add_(0, cell, torch.ones_like(cell, dtype=torch.float64))
            codes = sae.encode_sparse(batch)
            key = cell[codes.rows] * n_latents + codes.latents
            fired.index_add_(0, key, torch.ones_like(codes.values))
            activation.index_add_(0, key, codes.values.double())
            done += batch.shape[0]
            if progress is not None:
                progress(done, store.n_rows)
    return LatentUsage(
        case_ids=[c["case_id"] for c in cases],
        populations=np.array([c["population"] for c in cases], dtype=object),
        rows=rows.view(n_cases, n_strata).numpy(),
        fired=fired.view(n_cases, n_strata, n_latents).numpy(),
        activation=activation.view(n_cases, n_strata, n_latents).numpy(),
        source={"store": str(store.path), "store_rows": store.n_rows, "store_info": store.info},
    )
