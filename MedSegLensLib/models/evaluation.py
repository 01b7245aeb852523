"""Evaluating a model on cohorts: per-case Dice and HD95 for WT, TC, ET, by population.

Predictions are scored on each case's own (canonical) grid against its
reference segmentation, with the BraTS conventions of `MedSegLensLib.metrics`
(a healthy case predicted empty scores Dice 1; any false positive scores 0).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..data import CaseFiles
from ..errors import InputError
from ..fileio import write_text_atomic
from ..metrics import REGIONS, brats_scores
from .inference import SegmentationModel

CASE_COLUMNS = [
    "case_id",
    "population",
    *[f"dice_{r}" for r in REGIONS],
    *[f"hd95_{r}" for r in REGIONS],
    "ref_volume_ml",
    "pred_volume_ml",
]
SUMMARY_COLUMNS = [
    "population",
    "region",
    "n",
    "dice_mean",
    "dice_std",
    "dice_median",
    "hd95_mean",
    "hd95_median",
    "failures",
]
FAILURE_DICE = 0.5
# A case without tumour fails when the model predicts more tumour than this: its Dice is 0 for any
# false-positive voxel (BraTS convention), which would call a few stray voxels a failure.
FALSE_POSITIVE_ML = 1.0


def score_case(model: SegmentationModel, files: CaseFiles, precision: str = "fp32") -> dict:
    """Segment one labelled case and score it against its reference."""
    case = files.load()
    if case.label is None:
        raise InputError(f"case {files.case_id}: no segmentation (-seg file); evaluation needs a reference")
    prediction = model.predict(case, precision=precision)
    row = {"case_id": files.case_id, "population": files.population}
    row.update(brats_scores(prediction.labels, case.label, case.grid.spacing, structures=REGIONS))
    voxel_ml = float(np.prod(case.grid.spacing)) / 1000.0
    row["ref_volume_ml"] = round(int(np.count_nonzero(case.label)) * voxel_ml, 3)
    row["pred_volume_ml"] = round(int(np.count_nonzero(prediction.labels)) * voxel_ml, 3)
    return row


def evaluate_model(
    model: SegmentationModel,
    cases: Sequence[CaseFiles],
    progress: Callable[[int, int, dict], None] | None = None,
    precision: str = "fp32",
) -> list[dict]:
    """One row of scores per case (columns `CASE_COLUMNS`)."""
    labelled = [c for c in cases if c.seg]
    if not labelled:
        raise InputError("no labelled cases to evaluate (each case needs a -seg file)")
    rows = []
    for number, files in enumerate(labelled):
        rows.append(score_case(model, files, precision))
        if progress:
            progress(number + 1, len(labelled), rows[-1])
    return rows


def summarise_by_population(rows: Sequence[dict], failure_dice: float = FAILURE_DICE) -> list[dict]:
    """Mean/std/median Dice and HD95 per population and region, and the number of failures (Dice < threshold)."""
    summary = []
    populations = sorted({r["population"] for r in rows})
    for population in [*populations, "all"]:
        subset = [r for r in rows if population == "all" or r["population"] == population]
        for region in REGIONS:
            dice = np.array([r[f"dice_{region}"] for r in subset], dtype=float)
            hd95 = np.array([r[f"hd95_{region}"] for r in subset], dtype=float)
            summary.append(
                {
                    "population": population,
                    "region": region,
                    "n": len(subset),
                    "dice_mean": float(dice.mean()),
                    "dice_std": float(dice.std()),
                    "dice_median": float(np.median(dice)),
                    "hd95_mean": float(hd95.mean()),
                    "hd95_median": float(np.median(hd95)),
                    "failures": int(np.sum(dice < failure_dice)),
                }
            )
    return summary


def failing_regions(row: dict, failure_dice: float = FAILURE_DICE) -> list[str]:
    """Regions whose Dice is below the threshold; for a case without tumour, "FP" when it predicts over 1 ml."""
    if row["ref_volume_ml"] == 0:
        return ["FP"] if row["pred_volume_ml"] > FALSE_POSITIVE_ML else []
    return [r for r in REGIONS if row[f"dice_{r}"] < failure_dice]


def failure_cases(rows: Sequence[dict], failure_dice: float = FAILURE_DICE) -> list[dict]:
    """Cases that fail (see `failing_regions`), with the failing regions."""
    failures = []
    for row in rows:
        failing = failing_regions(row, failure_dice)
        if failing:
            failures.append(
                {
                    "case_id": row["case_id"],
                    "population": row["population"],
                    "regions": " ".join(failing),
                    **{f"dice_{r}": row[f"dice_{r}"] for r in REGIONS},
                }
            )
    return failures


def csv_text(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v) for k, v in row.items()})
    return buffer.getvalue()


def summary_path(out_csv: str | os.PathLike) -> Path:
    """Where the summary table of `out_csv` goes: `<name>.summary.csv` beside it."""
    return Path(out_csv).with_suffix(".summary.csv")


def write_evaluation(
    rows: Sequence[dict], out_csv: str | os.PathLike, failure_dice: float = FAILURE_DICE
) -> tuple[Path, Path]:
    """Write the per-case CSV and its summary CSV (atomically); return both paths."""
    out_csv = Path(out_csv)
    write_text_atomic(out_csv, csv_text(rows, CASE_COLUMNS))
    summary = summary_path(out_csv)
    write_text_atomic(summary, csv_text(summarise_by_population(rows, failure_dice), SUMMARY_COLUMNS))
    return out_csv, summary


def format_summary(summary: Sequence[dict]) -> str:
    """A plain-text table: population, region, n, Dice mean +- std, HD95 median, failures."""
    lines = [f"{'population':<12} {'region':<6} {'n':>4} {'Dice mean±sd':>14} {'HD95 med':>9} {'fail':>5}"]
    for row in summary:
        lines.append(
            f"{row['population']:<12} {row['region']:<6} {row['n']:>4} "
            f"{row['dice_mean']:>7.3f}±{row['dice_std']:<6.3f} {row['hd95_median']:>9.1f} {row['failures']:>5}"
        )
    return "\n".join(lines)
