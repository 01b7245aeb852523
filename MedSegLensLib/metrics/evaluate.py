"""Scoring prediction files against reference files: one pair, or two folders matched by case id.

Both label maps are read in their own geometry and brought to canonical RAS
order; they must then lie on the same grid (a prediction may be a reoriented
copy of the reference, not a resampled one). Distances use that grid's spacing.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.brats import LABEL_MAPS, file_role, label_scheme
from ..data.case import LABEL_VALUES
from ..data.cohort import MANIFEST_CSV, MANIFEST_JSON, read_manifest
from ..data.geometry import Grid, to_canonical
from ..data.labels import read_label_volume
from ..data.volumes import image_suffix, strip_image_suffix
from ..errors import InputError
from ..fileio import write_text_atomic
from .scores import HD95_PENALTY_MM, brats_scores, score_columns

SUMMARY_STATS: dict[str, Callable[[np.ndarray], float]] = {"mean": np.mean, "std": np.std, "median": np.median}


@dataclass
class Pair:
    """One case to score: its id, the reference file and the prediction file (None when missing)."""

    case_id: str
    ref: Path
    pred: Path | None


def read_labels_canonical(path: Path, scheme: str | None = None) -> tuple[np.ndarray, Grid]:
    """A BraTS label file as a canonical-order uint8 array and its canonical grid."""
    scheme = scheme or label_scheme(path)
    volume = read_label_volume(
        path, LABEL_VALUES, LABEL_MAPS[scheme], kind="label", hint="labels must follow BraTS (1 NCR, 2 ED, 3 ET)"
    )
    return to_canonical(volume.array, volume.grid)


def score_pair(pred_path: str | os.PathLike, ref_path: str | os.PathLike, with_hd95: bool = True) -> dict[str, float]:
    """Scores of one prediction file against one reference file on the same grid."""
    pred_path, ref_path = Path(pred_path), Path(ref_path)
    ref, ref_grid = read_labels_canonical(ref_path)
    pred, pred_grid = read_labels_canonical(pred_path, scheme=label_scheme(ref_path))
    if not pred_grid.same_as(ref_grid):
        raise InputError(
            f"{pred_path}: grid {pred_grid.shape} {pred_grid.orientation} spacing "
            f"{_fmt(pred_grid.spacing)} differs from the reference {ref_path} ({ref_grid.shape} {ref_grid.orientation} "
            f"spacing {_fmt(ref_grid.spacing)}); write the prediction on the reference's grid"
        )
    return brats_scores(pred, ref, ref_grid.spacing, with_hd95=with_hd95)


def _fmt(values: Iterable[float]) -> str:
    return "x".join(f"{v:g}" for v in values)


def label_files(folder: str | os.PathLike) -> dict[str, Path]:
    """Label maps in `folder` by case id.

    Understood layouts: a cohort with a manifest (its `seg` column); case
    sub-folders holding `<case>-seg` / `<case>_seg` (or a single image file);
    flat files `<case>-seg.nii.gz`, `<case>_seg.nii.gz` or `<case>.nii.gz`.
    Modality images (`-t1n`, `_flair`, ...) are never taken for label maps.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found")
    for name in (MANIFEST_CSV, MANIFEST_JSON):
        if (folder / name).is_file():
            return {c.case_id: Path(c.seg) for c in read_manifest(folder / name) if c.seg}
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        hit = _sub_folder_labels(entry) if entry.is_dir() else _flat_label(entry)
        if hit is None:
            continue
        case_id, path = hit
        if case_id in found:
            raise InputError(f"{folder}: two label maps for case '{case_id}': {found[case_id].name} and {path.name}")
        found[case_id] = path
    return found


def _flat_label(path: Path) -> tuple[str, Path] | None:
    if not path.is_file() or not image_suffix(path):
        return None
    role = file_role(path)
    if role is None:
        return strip_image_suffix(path), path
    return (role[2], path) if role[1] == "seg" else None


def _sub_folder_labels(folder: Path) -> tuple[str, Path] | None:
    images = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".") and image_suffix(p)]
    segs = [p for p in images if (file_role(p) or ("", ""))[1] == "seg"]
    unnamed = [p for p in images if file_role(p) is None]
    chosen = segs or (unnamed if len(unnamed) == 1 else [])
    if len(chosen) > 1:
        raise InputError(f"{folder}: several segmentation files ({', '.join(p.name for p in chosen)}); keep one")
    return (folder.name, chosen[0]) if chosen else None


def match_folders(pred_folder: str | os.PathLike, ref_folder: str | os.PathLike) -> tuple[list[Pair], list[str]]:
    """Pairs for every reference case (prediction None when missing) and the unmatched prediction ids."""
    refs = label_files(ref_folder)
    if not refs:
        raise InputError(
            f"{ref_folder}: no reference label maps found; expected <case>/<case>-seg.nii.gz or a manifest with a "
            "seg column"
        )
    preds = label_files(pred_folder)
    if not set(preds) & set(refs):
        raise InputError(
            f"{pred_folder}: none of its {len(preds)} label map(s) matches a reference case id "
            f"(e.g. '{next(iter(refs))}'); name predictions <case>.nii.gz or <case>/<case>-seg.nii.gz"
        )
    pairs = [Pair(case_id, ref, preds.get(case_id)) for case_id, ref in refs.items()]
    return pairs, sorted(set(preds) - set(refs))


def resolve_pairs(pred: str | os.PathLike, ref: str | os.PathLike) -> tuple[list[Pair], list[str]]:
    """Pairs to score for `--pred`/`--ref`: two label files, or two folders."""
    pred, ref = Path(pred), Path(ref)
    for path, what in ((pred, "prediction"), (ref, "reference")):
        if not path.exists():
            raise InputError(f"{path}: {what} not found")
    if pred.is_file() and ref.is_file():
        role = file_role(ref)
        return [Pair(role[2] if role and role[2] else strip_image_suffix(ref), ref, pred)], []
    if pred.is_dir() and ref.is_dir():
        return match_folders(pred, ref)
    raise InputError(f"{pred} and {ref}: give two label files or two folders, not one of each")


def score_pairs(pairs: list[Pair], with_hd95: bool = True, progress: Callable | None = None) -> list[dict]:
    """One row per pair; a missing prediction scores like an empty one against a tumour (BraTS penalty)."""
    rows = []
    for pair in progress(pairs) if progress else pairs:
        row: dict = {"case_id": pair.case_id, "kind": "case"}
        if pair.pred is None:
            row.update(_missing_scores(with_hd95))
            row["status"] = "missing prediction"
        else:
            row.update(score_pair(pair.pred, pair.ref, with_hd95=with_hd95))
            row["status"] = "ok"
        row["pred"], row["ref"] = str(pair.pred or ""), str(pair.ref)
        rows.append(row)
    return rows


def _missing_scores(with_hd95: bool) -> dict[str, float]:
    return {c: (0.0 if c.startswith("dice") else HD95_PENALTY_MM) for c in score_columns(with_hd95)}


def summarise(rows: list[dict], with_hd95: bool = True) -> list[dict]:
    """Mean, std and median of every score over the case rows (NaN-free by construction)."""
    columns = score_columns(with_hd95)
    summary = []
    for name, stat in SUMMARY_STATS.items():
        row: dict = {"case_id": name, "kind": "summary", "status": f"{len(rows)} case(s)"}
        for column in columns:
            values = np.asarray([r[column] for r in rows], dtype=float)
            row[column] = float(stat(values)) if values.size else math.nan
        summary.append(row)
    return summary


def metrics_table(rows: list[dict], with_hd95: bool = True) -> str:
    """CSV text: per-case rows then the summary rows."""
    columns = ["case_id", "kind", "status", *score_columns(with_hd95), "pred", "ref"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    for row in [*rows, *summarise(rows, with_hd95)]:
        writer.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def write_metrics_csv(rows: list[dict], path: str | os.PathLike, with_hd95: bool = True) -> Path:
    """Write the metrics table atomically."""
    path = Path(path)
    write_text_atomic(path, metrics_table(rows, with_hd95))
    return path
