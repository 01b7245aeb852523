"""A category and a confidence per latent: chosen on the fit cases, kept only if it holds on held-out cases.

Targets are ranked by Cohen's kappa at the best-Dice threshold on the fit cases
(split.py): Dice alone rewards a latent that fires everywhere with large classes
(background, white matter), kappa subtracts the agreement expected by chance.
The best target w and its threshold are then scored, unchanged, on the held-out
cases. A target "passes" on a set of cases by one of two paths:

- coverage: kappa_w >= KAPPA_MIN and AUROC_w >= AUROC_MIN (the latent covers a
  sizeable share of w and separates it from the rest);
- selectivity: precision_w >= PRECISION_MIN x attainable_w and precision_w / prevalence_w
  >= LIFT_MIN (most of what the latent marks is w, as far as the layer's grid can
  tell, and at least LIFT_MIN times more often than a random voxel), and, on the
  held-out cases, it fires in at least HELD_OUT_CASES_MIN of them (so one lucky
  blob does not make a label). attainable_w is the precision of the best map the
  layer's grid can draw for w (`ScoreTable.attainable_precision`): 1 for a class
  made of whole layer voxels, far less for a thin rim on a coarse layer.

A latent whose target passes on the fit cases is `matched`; if it passes on the
held-out cases too it is `validated` and named (CATEGORY_OF_TARGET), otherwise it
is "unlabelled". Artefact latents (artefacts.py: lattices, seams, the volume's
edge, outside the head) are named as artefacts whatever they match, except a
periodic one (lattice, seam) whose validated label is concentrated on its class
(held-out lift >= LOCATED_LIFT_MIN): that is a feature drawn with the layer's
checkerboard texture, named by its class (its record keeps the artefact kind). A latent
that never fires is "inactive". The gates are justified in docs/interpret.md.

confidence = clip(min(2 (AUROC_w - 0.5), kappa_w - max(kappa_r, 0)), 0, 1) on the
held-out cases at the fit thresholds, r the fit runner-up: high when the latent
separates w from everything else and explains w clearly better than any other
target. Levels: high >= 0.5, medium >= 0.25, low below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .artefacts import ARTEFACT_CATEGORIES, GRID, SEAM
from .scoring import ScoreTable

KAPPA_MIN = 0.2  # "fair" agreement beyond chance (Landis and Koch)
AUROC_MIN = 0.6
PRECISION_MIN = 0.5  # most of the marked voxels are the class (of what the layer's grid can mark: x attainable)
LIFT_MIN = 2.0  # ... at least twice as often as for a random voxel
HELD_OUT_CASES_MIN = 2  # a selective label must fire in at least this many held-out cases
LOCATED_LIFT_MIN = 10.0  # a periodic latent this concentrated on its validated class keeps the class's name
CATEGORY_OF_TARGET: dict[str, str] = {
    "ED": "edema",
    "ET": "enhancing tumour",
    "NCR": "necrotic core",
    "boundary": "tumour boundary",
    "CSF": "healthy CSF",
    "GM": "healthy grey matter",
    "WM": "healthy white matter",
    "background": "background/other",
}
ANATOMY_CATEGORIES: tuple[str, ...] = (
    "edema",
    "enhancing tumour",
    "necrotic core",
    "tumour boundary",
    "healthy CSF",
    "healthy grey matter",
    "healthy white matter",
    "background/other",
)
UNLABELLED = "unlabelled"
PERIODIC: tuple[str, ...] = (GRID, SEAM)  # artefacts of texture (a named class may carry them), not of place
CATEGORIES: tuple[str, ...] = ANATOMY_CATEGORIES + ARTEFACT_CATEGORIES + (UNLABELLED,)
INACTIVE = "inactive"


@dataclass
class LatentLabel:
    category: str
    target: str | None  # best-matching target on the fit cases (also when it is too weak to name the category)
    runner_up: str | None
    confidence: float
    matched: bool  # the best target passed a gate on the fit cases
    validated: bool = False  # ... and on the held-out cases, at the fit threshold

    @property
    def level(self) -> str:
        return confidence_level(self.confidence)


def confidence_level(confidence: float) -> str:
    return "high" if confidence >= 0.5 else "medium" if confidence >= 0.25 else "low"


def _ranked(kappa: np.ndarray, names: tuple[str, ...]) -> list[str]:
    valid = [t for t in range(len(kappa)) if np.isfinite(kappa[t])]
    return [names[t] for t in sorted(valid, key=lambda t: -kappa[t])]


def ranked_targets(table: ScoreTable, latent: int) -> list[str]:
    """Targets by kappa on all cases, best first (targets without positives are left out)."""
    return _ranked(table.metrics["kappa"][latent], table.targets.names)


def passes(
    metrics: dict[str, np.ndarray], latent: int, target: int, prevalence: float, attainable: float = 1.0
) -> tuple[bool, bool]:
    """(coverage, selectivity) gates of one latent and target in a metrics dict (see the module docstring);
    attainable: the target's attainable precision on the layer's grid."""
    kappa, auroc, precision = (float(metrics[m][latent, target]) for m in ("kappa", "auroc", "precision"))
    coverage = kappa >= KAPPA_MIN and auroc >= AUROC_MIN
    selective = (
        precision >= PRECISION_MIN * min(attainable, 1.0) and prevalence > 0 and precision / prevalence >= LIFT_MIN
    )
    return coverage, selective


def label_latent(table: ScoreTable, latent: int, held_out_firing: np.ndarray | None = None) -> LatentLabel:
    """held_out_firing: (latents,) held-out cases each latent fires in at its fit threshold (`held_out_firing`)."""
    names = table.targets.names
    ranked = _ranked(table.fit_metrics["kappa"][latent], names)
    if not table.active[latent] or not ranked:
        return LatentLabel(INACTIVE, None, None, 0.0, False)
    best = ranked[0]
    runner_up = ranked[1] if len(ranked) > 1 else None
    w = names.index(best)
    fit = (table.prevalence(best, held_out=False), table.attainable_precision(best, held_out=False))
    matched = any(passes(table.fit_metrics, latent, w, *fit))
    held = (table.prevalence(best, held_out=True), table.attainable_precision(best, held_out=True))
    coverage, selective = passes(table.held_out_metrics, latent, w, *held)
    support = held_out_firing is not None and held_out_firing[latent] >= HELD_OUT_CASES_MIN
    validated = matched and (coverage or (selective and support))
    held_out = table.held_out_metrics
    kappa, auroc = float(held_out["kappa"][latent, w]), float(held_out["auroc"][latent, w])
    rival = float(held_out["kappa"][latent, names.index(runner_up)]) if runner_up else np.nan
    margin = kappa - max(rival, 0.0) if np.isfinite(rival) else kappa
    confidence = float(np.nan_to_num(np.clip(min(2 * (auroc - 0.5), margin), 0.0, 1.0)))
    kind = table.artefacts.kind(latent)
    prevalence = held[0]
    lift = float(held_out["precision"][latent, w]) / prevalence if prevalence > 0 else 0.0
    textured = kind in PERIODIC and validated and lift >= LOCATED_LIFT_MIN
    category = kind if kind and not textured else CATEGORY_OF_TARGET[best] if validated else UNLABELLED
    return LatentLabel(category, best, runner_up, round(confidence, 4), matched, validated)


def fit_thresholds(table: ScoreTable) -> np.ndarray:
    """Each latent's threshold for its best fit target (its label's target), chosen on the fit cases (0 when it
    has none): where it "fires"."""
    kappa = np.nan_to_num(table.fit_metrics["kappa"], nan=-np.inf)
    best = np.argmax(kappa, axis=1)
    thresholds = table.fit_metrics["threshold"][np.arange(table.n_latents), best]
    return np.nan_to_num(np.where(np.isfinite(kappa.max(axis=1)), thresholds, 0.0), nan=0.0)


def held_out_firing(table: ScoreTable, thresholds: np.ndarray) -> np.ndarray:
    """(latents,) held-out cases in which each latent fires at its threshold."""
    return table.fires(thresholds)[table.held_out].sum(axis=0)


def label_all(table: ScoreTable) -> list[LatentLabel]:
    firing = held_out_firing(table, fit_thresholds(table))
    return [label_latent(table, latent, firing) for latent in range(table.n_latents)]


def validation_summary(records: list[dict]) -> dict:
    """How many active latents carry a held-out-validated anatomy label, and their share of the active ones."""
    active = [r for r in records if r["active"]]
    named = sum(1 for r in active if r["validated"] and r["category"] in ANATOMY_CATEGORIES)
    return {
        "active": len(active),
        "validated": named,
        "validated_share": round(named / len(active), 4) if active else 0.0,
    }
