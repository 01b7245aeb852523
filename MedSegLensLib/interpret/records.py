"""Per-latent records: what `latents.json` holds for each latent (schema in docs/interpret.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .artefacts import rounded
from .categories import LatentLabel, confidence_level, fit_thresholds, held_out_firing, ranked_targets
from .describe import describe
from .location import summarise_location
from .scoring import METRICS, ScoreTable

TOP_SCORES = 3
TOP_CASES = 3
HELD_OUT_METRICS = ("auroc", "dice", "precision", "recall", "kappa", "threshold")


def target_scores(table: ScoreTable, latent: int, target: str) -> dict:
    t = table.targets.index(target)
    return {"target": target, **{m: rounded(table.metrics[m][latent, t]) for m in METRICS}}


def held_out_scores(table: ScoreTable, latent: int, target: str, fired: int) -> dict:
    """The label's target on the held-out cases at the threshold chosen on the fit cases, with the lift
    (precision over the target's held-out prevalence) and the held-out cases it fires in."""
    t = table.targets.index(target)
    scores = {m: rounded(table.held_out_metrics[m][latent, t]) for m in HELD_OUT_METRICS}
    prevalence = table.prevalence(target, held_out=True)
    lift = table.held_out_metrics["precision"][latent, t] / prevalence if prevalence > 0 else np.nan
    return {"target": target, **scores, "lift": rounded(lift), "cases": int(table.held_out.sum()), "fired": int(fired)}


def population_rows(table: ScoreTable) -> dict[str, np.ndarray]:
    """Boolean case selector per population, in order of first appearance."""
    return {p: np.array([q == p for q in table.populations]) for p in dict.fromkeys(table.populations)}


@dataclass
class FiringContext:
    """What every record needs from the whole table, computed once: which cases each latent fires in
    (at its firing threshold), the cases of each population, and the mass per atlas label above threshold."""

    thresholds: np.ndarray
    fires: np.ndarray
    groups: dict[str, np.ndarray]
    region_mass: np.ndarray | None
    held_out_fired: np.ndarray

    @classmethod
    def of(cls, table: ScoreTable) -> FiringContext:
        thresholds = fit_thresholds(table)
        return cls(
            thresholds,
            table.fires(thresholds),
            population_rows(table),
            table.region_mass_above(thresholds),
            held_out_firing(table, thresholds),
        )


def population_firing(
    table: ScoreTable, latent: int, fires: np.ndarray, groups: dict[str, np.ndarray]
) -> dict[str, dict]:
    """Per population: cases, cases where the latent fires, mean active volume (any level) and peak."""
    out: dict[str, dict] = {}
    for population, rows in groups.items():
        out[population] = {
            "cases": int(rows.sum()),
            "fired": int(fires[rows, latent].sum()),
            "mean_active_ml": round(float(table.active_ml[rows, latent].mean()), 3),
            "mean_peak": round(float(table.peak[rows, latent].mean()), 4),
        }
    return out


def latent_record(table: ScoreTable, label: LatentLabel, latent: int, context: FiringContext) -> dict:
    """The record of one latent (see docs/interpret.md for the fields)."""
    active = bool(table.active[latent])
    ranked = ranked_targets(table, latent)[:TOP_SCORES] if active else []
    location = None
    if active and context.region_mass is not None:
        found = summarise_location(context.region_mass[latent])
        location = found.to_json() if found else None
    top = np.argsort(-table.peak[:, latent], kind="stable")[:TOP_CASES]
    record = {
        "index": latent,
        "active": active,
        "category": label.category,
        "target": label.target,
        "matched": label.matched,
        "validated": label.validated,
        "confidence": label.confidence,
        "confidence_level": confidence_level(label.confidence),
        "description": "",
        "top_scores": [target_scores(table, latent, t) for t in ranked],
        "firing_threshold": rounded(context.thresholds[latent]) if label.target else None,
        "populations": population_firing(table, latent, context.fires, context.groups),
        "location": location,
        "held_out": held_out_scores(table, latent, label.target, context.held_out_fired[latent])
        if label.target
        else None,
        "artefact": table.artefacts.record(latent) if active else None,
        "top_cases": [
            {
                "case_id": table.case_ids[c],
                "population": table.populations[c],
                "peak": round(float(table.peak[c, latent]), 4),
            }
            for c in top
            if table.peak[c, latent] > 0
        ],
    }
    record["description"] = describe(record, table.settings.shell_mm)
    return record


def latent_records(table: ScoreTable, labels: list[LatentLabel]) -> list[dict]:
    context = FiringContext.of(table)
    return [latent_record(table, label, latent, context) for latent, label in enumerate(labels)]
