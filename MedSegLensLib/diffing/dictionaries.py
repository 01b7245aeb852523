"""Compare two SAEs trained on the same backbone layer (e.g. one per population) by their dictionaries.

Latents are matched one-to-one by the cosine of their decoder rows (optimal
assignment, see matching.py). A pair at or above `threshold` counts as the same
feature; latents of either side without such a partner are that side's orphans.

Chance level: with few channels and many latents, random directions already reach
high cosines (in 32 dimensions the best of 4096 random unit vectors has cosine
~0.7). So B's dictionary is also matched after a random rotation (which keeps B's
own geometry but breaks any alignment with A), and the fraction above the
threshold under that rotation is reported beside the real one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import CompatibilityError, ParameterError
from ..sae.model import SparseAutoencoder
from .matching import CosineSimilarity, Matching, match_latents

DEFAULT_THRESHOLD = 0.7
MATCHING_METHODS = ("auto", "dense", "pruned")


@dataclass(frozen=True)
class DictionaryDiffSettings:
    """How `dictionary_study` matches two dictionaries: the cosine that counts as matched and the assignment."""

    threshold: float = DEFAULT_THRESHOLD
    method: str = "auto"  # dense (exact, up to a few thousand latents), pruned (candidates), auto
    neighbours: int = 8  # candidates per latent for the pruned assignment
    seed: int = 0  # of the random rotation behind the chance level

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ParameterError(f"threshold {self.threshold} must be a decoder cosine in (0, 1]")
        if self.method not in MATCHING_METHODS:
            raise ParameterError(f"matching method {self.method!r} is unknown; use {', '.join(MATCHING_METHODS)}")
        if self.neighbours < 1:
            raise ParameterError(f"neighbours must be >= 1, got {self.neighbours}")


@dataclass
class DictionaryComparison:
    matching: Matching  # indices are the SAEs' own latent indices
    threshold: float
    alive_a: np.ndarray  # bool per A latent (all True when no firing data was given)
    alive_b: np.ndarray
    chance: Matching  # the same matching against a randomly rotated B

    def summary(self) -> dict:
        above = self.matching.above(self.threshold)
        sims = self.matching.similarity
        quantiles = np.quantile(sims, [0.05, 0.25, 0.5, 0.75, 0.95]).tolist() if sims.size else []
        n_a, n_b = int(self.alive_a.sum()), int(self.alive_b.sum())
        return {
            "threshold": self.threshold,
            "method": self.matching.method,
            "latents_a": int(self.alive_a.size),
            "latents_b": int(self.alive_b.size),
            "alive_a": n_a,
            "alive_b": n_b,
            "pairs": int(sims.size),
            "matched_above_threshold": int(above.sum()),
            "fraction_of_a_matched": float(above.sum() / max(n_a, 1)),
            "fraction_of_b_matched": float(above.sum() / max(n_b, 1)),
            "orphans_a": int(n_a - above.sum()),
            "orphans_b": int(n_b - above.sum()),
            "similarity_quantiles_5_25_50_75_95": quantiles,
            "mean_similarity": float(sims.mean()) if sims.size else float("nan"),
            "chance_fraction_above_threshold": float(self.chance.above(self.threshold).sum() / max(min(n_a, n_b), 1)),
            "chance_similarity_median": float(np.median(self.chance.similarity))
            if self.chance.similarity.size
            else float("nan"),
        }

    def orphans_a(self) -> np.ndarray:
        """Alive A latents without a partner at or above the threshold."""
        return np.intersect1d(self.matching.orphans_a(self.threshold), np.flatnonzero(self.alive_a))

    def orphans_b(self) -> np.ndarray:
        return np.intersect1d(self.matching.orphans_b(self.threshold), np.flatnonzero(self.alive_b))


def _random_rotation(d: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


def _restricted(matching: Matching, index_a: np.ndarray, index_b: np.ndarray, n_a: int, n_b: int) -> Matching:
    """Map a matching of latent subsets back to the SAEs' own indices."""
    return Matching(
        index_a[matching.a], index_b[matching.b], matching.similarity, n_a, n_b, matching.method
    ).sorted_by_a()


def compare_dictionaries(
    sae_a: SparseAutoencoder,
    sae_b: SparseAutoencoder,
    threshold: float = DEFAULT_THRESHOLD,
    alive_a: np.ndarray | None = None,
    alive_b: np.ndarray | None = None,
    method: str = "auto",
    neighbours: int = 8,
    seed: int = 0,
) -> DictionaryComparison:
    """Match the alive latents of two SAEs by decoder cosine; report the chance level too."""
    if sae_a.d_in != sae_b.d_in:
        raise CompatibilityError(
            f"the SAEs take {sae_a.d_in} and {sae_b.d_in} channels, so their dictionaries live in different spaces; "
            "compare SAEs of one layer here, or use `medseglens diff archs` for different models"
        )
    alive_a = np.ones(sae_a.n_latents, dtype=bool) if alive_a is None else np.asarray(alive_a, dtype=bool)
    alive_b = np.ones(sae_b.n_latents, dtype=bool) if alive_b is None else np.asarray(alive_b, dtype=bool)
    index_a, index_b = np.flatnonzero(alive_a), np.flatnonzero(alive_b)
    w_a = sae_a.W_dec.detach()[torch.as_tensor(index_a)]
    w_b = sae_b.W_dec.detach()[torch.as_tensor(index_b)]
    matching = match_latents(CosineSimilarity(w_a, w_b), method, neighbours)
    rotated = w_b @ _random_rotation(sae_b.d_in, seed)
    chance = match_latents(CosineSimilarity(w_a, rotated), method, neighbours)
    n_a, n_b = sae_a.n_latents, sae_b.n_latents
    return DictionaryComparison(
        _restricted(matching, index_a, index_b, n_a, n_b),
        threshold,
        alive_a,
        alive_b,
        _restricted(chance, index_a, index_b, n_a, n_b),
    )
