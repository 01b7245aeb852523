"""A category and a confidence per latent, from its scores against every target.

Targets are ranked by Cohen's kappa at the best-Dice threshold: Dice alone
rewards a latent that fires everywhere with large classes (background, white
matter), kappa subtracts the agreement expected by chance.

- The best target w names the category when kappa_w >= KAPPA_MIN and
  AUROC_w >= AUROC_MIN; otherwise the latent is "background/other" (no match).
  A best target of "background" (outside the brain) is "background/other" too.
- confidence = clip(min(2 (AUROC_w - 0.5), kappa_w - max(kappa_r, 0)), 0, 1), with r
  the runner-up target: high when the latent separates w from everything else
  (AUROC) and explains w clearly better than any other target (kappa margin).
  Levels: high >= 0.5, medium >= 0.25, low below.
- A latent that never fires on the cohort is "inactive", confidence 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scoring import ScoreTable

KAPPA_MIN = 0.2
AUROC_MIN = 0.6
CATEGORY_OF_TARGET: dict[str, str] = {
    "ED": "edema", "ET": "enhancing tumour", "NCR": "necrotic core", "boundary": "tumour boundary",
    "CSF": "healthy CSF", "GM": "healthy grey matter", "WM": "healthy white matter", "background": "background/other",
}
CATEGORIES: tuple[str, ...] = (
    "edema", "enhancing tumour", "necrotic core", "tumour boundary",
    "healthy CSF", "healthy grey matter", "healthy white matter", "background/other",
)
INACTIVE = "inactive"


@dataclass
class LatentLabel:
    category: str
    target: str | None  # best-matching target (also when it is too weak to name the category)
    runner_up: str | None
    confidence: float
    matched: bool  # the best target passed the kappa and AUROC gates

    @property
    def level(self) -> str:
        return confidence_level(self.confidence)


def confidence_level(confidence: float) -> str:
    return "high" if confidence >= 0.5 else "medium" if confidence >= 0.25 else "low"


def ranked_targets(table: ScoreTable, latent: int) -> list[str]:
    """Targets by kappa, best first (targets without positives are left out)."""
    kappa = table.metrics["kappa"][latent]
    valid = [t for t in range(len(kappa)) if np.isfinite(kappa[t])]
    return [table.targets.names[t] for t in sorted(valid, key=lambda t: -kappa[t])]


def label_latent(table: ScoreTable, latent: int) -> LatentLabel:
    ranked = ranked_targets(table, latent)
    if not table.active[latent] or not ranked:
        return LatentLabel(INACTIVE, None, None, 0.0, False)
    best = ranked[0]
    runner_up = ranked[1] if len(ranked) > 1 else None
    kappa = table.score("kappa", latent, best)
    auroc = table.score("auroc", latent, best)
    margin = kappa - max(table.score("kappa", latent, runner_up), 0.0) if runner_up else kappa
    confidence = float(np.clip(min(2 * (auroc - 0.5), margin), 0.0, 1.0))
    matched = kappa >= KAPPA_MIN and auroc >= AUROC_MIN
    category = CATEGORY_OF_TARGET[best] if matched else "background/other"
    return LatentLabel(category, best, runner_up, round(confidence, 4), matched)


def label_all(table: ScoreTable) -> list[LatentLabel]:
    return [label_latent(table, latent) for latent in range(table.n_latents)]
