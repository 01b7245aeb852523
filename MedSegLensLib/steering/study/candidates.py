"""The interventions the study searches over, with the same budget for every method.

Population contrasts come from the SAE's own activation store (rows of tumour
voxels of adult and shifted cases, with their population): each latent's firing
frequency per population, and the mean layer activation per population. Until
the diffing package labels latents, "population-specific" means the largest
|log2 firing ratio| between adult and the population, "shared" a ratio near 0
with frequent firing in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...sae import ActivationStore, SparseAutoencoder
from ...steering_contract import RegionSpec, SteeringSpec
from .settings import REFERENCE_POPULATION, StudySettings

TUMOUR_LABELS = (1, 2, 3)
LOGIT_BIAS_TARGETS = ("background", "NCR", "ED", "ET")
EPS = 1e-3


@dataclass
class LatentUsage:
    """Per population: firing frequency of each latent and mean activation (C,) over tumour rows."""

    frequency: dict[str, torch.Tensor]
    mean_activation: dict[str, torch.Tensor]
    rows: dict[str, int]

    def log_ratio(self, population: str) -> torch.Tensor:
        """log2 of adult over population firing frequency: > 0 where adult cases use the latent more."""
        return torch.log2((self.frequency[REFERENCE_POPULATION] + EPS) / (self.frequency[population] + EPS))

    def mean_difference(self, population: str) -> torch.Tensor:
        """Adult minus population mean activation: the direction from the population towards adult."""
        return self.mean_activation[REFERENCE_POPULATION] - self.mean_activation[population]


@torch.no_grad()
def latent_usage(sae: SparseAutoencoder, store: ActivationStore, batch_size: int = 16384) -> LatentUsage:
    """Scan the store once: per population, firing counts and activation sums over rows of tumour voxels."""
    populations = [case["population"] for case in store.cases]
    names = sorted(set(populations))
    index_of = torch.tensor([names.index(p) for p in populations])
    fired = torch.zeros(len(names), sae.n_latents, dtype=torch.float64)
    sums = torch.zeros(len(names), sae.d_in, dtype=torch.float64)
    counts = torch.zeros(len(names), dtype=torch.float64)
    for rows, meta in store.scan_with_metadata(batch_size):
        tumour = torch.isin(meta["label"].long(), torch.tensor(TUMOUR_LABELS))
        if not bool(tumour.any()):
            continue
        rows, population = rows[tumour].float(), index_of[meta["case_index"].long()[tumour]]
        codes = sae.encode_sparse(rows)
        fired.index_put_(
            (population[codes.rows], codes.latents), torch.ones(len(codes.rows), dtype=torch.float64), accumulate=True
        )
        sums.index_add_(0, population, rows.double())
        counts += torch.bincount(population, minlength=len(names)).double()
    safe = counts.clamp_min(1)
    return LatentUsage(
        {n: (fired[i] / safe[i]).float() for i, n in enumerate(names)},
        {n: (sums[i] / safe[i]).float() for i, n in enumerate(names)},
        {n: int(counts[i]) for i, n in enumerate(names)},
    )


@dataclass
class Candidate:
    """One intervention: an SAE latent spec, a direction with an amount, or a per-class logit bias."""

    method: str
    key: str
    spec: SteeringSpec | None = None
    sae_index: int = 0
    direction: torch.Tensor | None = None
    amount: float = 0.0
    bias: tuple[float, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        data = {"method": self.method, "key": self.key, **self.info}
        if self.spec is not None:
            data["spec"] = self.spec.to_json()
        if self.bias is not None:
            data["bias"] = list(self.bias)
        if self.direction is not None:
            data["amount"] = self.amount
        return data


def population_specific(
    usage: LatentUsage, population: str, typical: torch.Tensor, count: int, min_firing: float
) -> list[tuple[int, int]]:
    """(latent, sign) of the `count` latents whose firing differs most from adult; sign +1 = adult uses it more."""
    ratio = usage.log_ratio(population)
    busy = torch.maximum(usage.frequency[REFERENCE_POPULATION], usage.frequency[population]) >= min_firing
    eligible = busy & (typical > 0)
    order = torch.argsort(ratio.abs() * eligible, descending=True)
    return [(int(i), 1 if ratio[i] > 0 else -1) for i in order[:count] if eligible[i]]


def shared_latents(usage: LatentUsage, population: str, typical: torch.Tensor, count: int) -> list[int]:
    """Latents that fire often in both populations at a similar rate (|log2 ratio| < 0.3)."""
    ratio = usage.log_ratio(population)
    both = torch.minimum(usage.frequency[REFERENCE_POPULATION], usage.frequency[population])
    score = both * (ratio.abs() < 0.3) * (typical > 0)
    order = torch.argsort(score, descending=True)
    return [int(i) for i in order[:count] if score[i] > 0]


def random_latents(typical: torch.Tensor, exclude: set[int], count: int, seed: int) -> list[int]:
    alive = [i for i in range(len(typical)) if typical[i] > 0 and i not in exclude]
    rng = np.random.default_rng(seed)
    return [int(i) for i in rng.choice(alive, size=min(count, len(alive)), replace=False)]


def sae_candidates(
    name: str, sae_index: int, chosen: list[tuple[int, int]], alphas, region: RegionSpec
) -> list[Candidate]:
    return [
        Candidate(
            name,
            f"latent {latent} {'+' if sign > 0 else '-'}{alpha:g}",
            spec=SteeringSpec((latent,), (sign * alpha,), "additive", region),
            sae_index=sae_index,
            info={"latent": latent, "alpha": sign * alpha},
        )
        for latent, sign in chosen
        for alpha in alphas
    ]


def direction_candidates(
    usage: LatentUsage, population: str, unit: float, settings: StudySettings, seed: int
) -> list[Candidate]:
    """Mean-difference (one direction, `budget` amounts) and random directions (same amounts as the SAE latents)."""
    difference = usage.mean_difference(population)
    direction = difference / difference.norm().clamp_min(1e-12)
    amounts = np.geomspace(min(settings.alphas) / 2, max(settings.alphas) * 1.5, settings.budget)
    out = [
        Candidate("mean-diff", f"x{a:.2f}", direction=direction, amount=float(unit * a), info={"alpha": float(a)})
        for a in amounts
    ]
    generator = torch.Generator().manual_seed(seed)
    for d in range(settings.latents_per_population):
        random = torch.randn(direction.shape[0], generator=generator)
        random /= random.norm()
        out += [
            Candidate("random", f"dir {d} x{a:g}", direction=random, amount=float(unit * a), info={"alpha": a})
            for a in settings.alphas
        ]
    return out


def logit_bias_candidates(settings: StudySettings, classes: int = 4) -> list[Candidate]:
    """A bias on one class's logit (background: lowered, so tumour grows for positive values)."""
    out = []
    for target_index, target in enumerate(LOGIT_BIAS_TARGETS[:classes]):
        for value in settings.logit_biases:
            bias = [0.0] * classes
            bias[target_index] = -value if target == "background" else value
            out.append(Candidate("logit-bias", f"{target} {value:+g}", bias=tuple(bias), info={"alpha": value}))
    return out
