"""Cohorts: folders of cases, listed by a manifest (CSV or JSON).

A manifest row names the case, its population and its files (paths relative to
the manifest's folder). Without a manifest, every sub-folder with BraTS-named
files is a case.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from ..errors import InputError
from ..fileio import write_text_atomic
from .brats import CaseFiles, find_case_files
from .case import MODALITIES

MANIFEST_CSV = "manifest.csv"
MANIFEST_JSON = "manifest.json"
MANIFEST_COLUMNS = ("case_id", "population", *MODALITIES, "seg", "tissue", "atlas")


def discover_cohort(folder: str | os.PathLike, population: str | None = None) -> list[CaseFiles]:
    """List the cases under `folder` (a cohort folder or a single case folder).

    A manifest in the folder wins; otherwise sub-folders are scanned.
    `population` overrides the manifest's population column when given.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: cohort folder not found")
    for name in (MANIFEST_CSV, MANIFEST_JSON):
        if (folder / name).is_file():
            cases = read_manifest(folder / name)
            break
    else:
        subfolders = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
        cases = []
        for sub in subfolders:
            try:
                cases.append(find_case_files(sub))
            except InputError:
                if any(_looks_like_case_file(f) for f in sub.iterdir()):
                    raise
        if not cases:
            cases = [find_case_files(folder)]
    if population is not None:
        for case in cases:
            case.population = population
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"{folder}: case id '{dup}' appears twice; case ids must be unique")
    return cases


def discover_cohorts(folders: list[str | os.PathLike]) -> list[CaseFiles]:
    """All cases of several cohort folders, in order; case ids must stay unique."""
    cases: list[CaseFiles] = []
    for folder in folders:
        cases.extend(discover_cohort(folder))
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"case id '{dup}' appears in two cohorts; rename one")
    return cases


def _looks_like_case_file(path: Path) -> bool:
    from .brats import _role

    return path.is_file() and _role(path) is not None


def _safe_relative(folder: Path, value: str, manifest: Path) -> str:
    """Resolve a manifest path; refuse ones that escape the manifest's folder."""
    candidate = (folder / value).resolve()
    if folder.resolve() not in candidate.parents:
        raise InputError(f"{manifest}: path '{value}' points outside the cohort folder; use paths relative to it")
    return str(candidate)


def read_manifest(path: str | os.PathLike) -> list[CaseFiles]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read manifest ({exc})") from None
    if path.suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: manifest is not valid JSON (line {exc.lineno}: {exc.msg})") from None
        rows = rows.get("cases", rows) if isinstance(rows, dict) else rows
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    if not isinstance(rows, list) or not rows:
        raise InputError(f"{path}: manifest lists no cases")
    cases = []
    for number, row in enumerate(rows, start=1):
        missing = [c for c in ("case_id", *MODALITIES) if not row.get(c)]
        if missing:
            raise InputError(f"{path}: row {number} lacks {', '.join(missing)}")
        case_id = str(row["case_id"])
        if "/" in case_id or "\\" in case_id or case_id in (".", ".."):
            raise InputError(f"{path}: row {number} case id '{case_id}' contains a path separator")
        files = {k: _safe_relative(path.parent, str(row[k]), path) for k in MODALITIES}
        optional = {k: _safe_relative(path.parent, str(row[k]), path) for k in ("seg", "tissue", "atlas") if row.get(k)}
        cases.append(
            CaseFiles(
                case_id=case_id,
                modalities=files,
                seg=optional.get("seg"),
                tissue=optional.get("tissue"),
                atlas=optional.get("atlas"),
                population=str(row.get("population") or "unknown"),
            )
        )
    return cases


def write_manifest(folder: str | os.PathLike, cases: list[CaseFiles]) -> Path:
    """Write `manifest.csv` in `folder` with paths relative to it."""
    folder = Path(folder)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for case in cases:
        row = {"case_id": case.case_id, "population": case.population}
        for key, value in {**case.modalities, "seg": case.seg, "tissue": case.tissue, "atlas": case.atlas}.items():
            row[key] = os.path.relpath(value, folder) if value else ""
        writer.writerow(row)
    target = folder / MANIFEST_CSV
    write_text_atomic(target, buffer.getvalue())
    return target
