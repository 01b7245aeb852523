"""Machine-readable outputs: `latents.json` (schema in docs/interpret.md), `latents.csv`, `scores.csv`."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..fileio import atomic_path, write_json_atomic
from .artefacts import ARTEFACT_CATEGORIES, rounded
from .categories import AUROC_MIN, HELD_OUT_CASES_MIN, KAPPA_MIN, LIFT_MIN, PRECISION_MIN, validation_summary
from .distribution import category_counts
from .scoring import METRICS, ScoreTable

FORMAT = "medseglens-latents"
VERSION = 1


def latents_document(table: ScoreTable, records: list[dict]) -> dict:
    populations = {p: table.populations.count(p) for p in dict.fromkeys(table.populations)}
    settings = table.settings
    artefacts = settings.artefacts
    counts = category_counts(records)
    return {
        "format": FORMAT,
        "version": VERSION,
        **table.info,
        "cases": len(table.case_ids),
        "populations": populations,
        "targets": list(table.targets.names),
        "target_voxels": {t: int(n) for t, n in zip(table.targets.names, table.positives)},
        "scoring": {
            "resampling": "nearest",
            "bins_per_octave": settings.bins_per_octave,
            "n_bins": settings.n_bins,
            "bin_ratio": round(table.bin_ratio, 6),
            "shell_mm": settings.shell_mm,
            "min_firing_ml": settings.min_firing_ml,
            "kappa_min": KAPPA_MIN,
            "auroc_min": AUROC_MIN,
            "location": "atlas" if table.region_mass is not None else None,
        },
        "category_counts": counts,
        "validation": {
            "split": "per population, cases ordered by SHA-256 of their id alternate fit / held out",
            "fit_cases": int((~table.held_out).sum()),
            "held_out_cases": int(table.held_out.sum()),
            "held_out_case_ids": [c for c, h in zip(table.case_ids, table.held_out) if h],
            "kappa_min": KAPPA_MIN,
            "auroc_min": AUROC_MIN,
            "precision_min": PRECISION_MIN,
            "lift_min": LIFT_MIN,
            "held_out_cases_min": HELD_OUT_CASES_MIN,
            "attainable_precision": {  # held-out cases; the selectivity gate is precision_min x this
                t: rounded(table.attainable_precision(t, held_out=True)) for t in table.targets.names
            },
            **validation_summary(records),
        },
        "artefacts": {
            "counts": {kind: counts[kind] for kind in ARTEFACT_CATEGORIES},
            "named_with_texture": sum(  # periodic latents named by their class (categories.LOCATED_LIFT_MIN)
                1 for r in records if r["active"] and r["artefact"]["kind"] not in (None, r["category"])
            ),
            "grid_period_voxels": artefacts.grid_period,
            "window_step_voxels": list(artefacts.window_step) if artefacts.window_step else None,
            "peak_ratio_min": artefacts.peak_ratio_min,
            "outside_share_min": artefacts.outside_share_min,
            "edge_share_min": artefacts.edge_share_min,
        },
        "latents": records,
    }


def _write_csv(path: Path, header: list[str], rows) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_scores_csv(path: Path, table: ScoreTable) -> None:
    """One row per latent and target with every metric and its binning bound."""
    names = table.targets.names
    rows = (
        [latent, target, *(_cell(float(table.metrics[m][latent, t])) for m in METRICS)]
        for latent in range(table.n_latents)
        for t, target in enumerate(names)
    )
    _write_csv(path, ["latent", "target", *METRICS], rows)


def write_latents_csv(path: Path, records: list[dict]) -> None:
    populations = list(records[0]["populations"]) if records else []
    header = [
        "latent",
        "active",
        "category",
        "target",
        "matched",
        "confidence",
        "confidence_level",
        "auroc",
        "dice",
        *[f"fired_{p}" for p in populations],
        *[f"cases_{p}" for p in populations],
        "main_region",
        "main_region_share",
        "left",
        "right",
        "outside_brain",
        "description",
        "validated",
        "held_out_auroc",
        "held_out_dice",
        "held_out_precision",
        "held_out_kappa",
        "artefact",
        "grid_peak_ratio",
        "seam_peak_ratio",
        "outside_head",
        "volume_edge",
    ]
    rows = []
    for r in records:
        best = r["top_scores"][0] if r["top_scores"] else {}
        location = r["location"] or {}
        region = (location.get("regions") or [{}])[0]
        held_out = r["held_out"] or {}
        artefact = r["artefact"] or {}
        rows.append(
            [
                r["index"],
                r["active"],
                r["category"],
                r["target"] or "",
                r["matched"],
                r["confidence"],
                r["confidence_level"],
                _cell(best.get("auroc")),
                _cell(best.get("dice")),
                *[r["populations"][p]["fired"] for p in populations],
                *[r["populations"][p]["cases"] for p in populations],
                region.get("region", ""),
                _cell(region.get("share")),
                _cell(location.get("left")),
                _cell(location.get("right")),
                _cell(location.get("outside_brain")),
                r["description"],
                r["validated"],
                *(_cell(held_out.get(m)) for m in ("auroc", "dice", "precision", "kappa")),
                artefact.get("kind") or "",
                *(
                    _cell(artefact.get(m))
                    for m in ("grid_peak_ratio", "seam_peak_ratio", "outside_head", "volume_edge")
                ),
            ]
        )
    _write_csv(path, header, rows)


def write_tables(folder: str | os.PathLike, table: ScoreTable, records: list[dict]) -> dict:
    """Write the three files into `folder`; return the JSON document."""
    folder = Path(folder)
    document = latents_document(table, records)
    write_json_atomic(folder / "latents.json", document)
    write_latents_csv(folder / "latents.csv", records)
    write_scores_csv(folder / "scores.csv", table)
    return document
