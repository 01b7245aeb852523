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

from ..errors import InputError, OutputError
from ..fileio import write_text_atomic
from .brats import CaseFiles, file_role, find_case_files, label_scheme
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
    _check_unique(cases, str(folder))
    return cases


def discover_cohorts(folders: list[str | os.PathLike]) -> list[CaseFiles]:
    """All cases of several cohort folders, in order; case ids must stay unique."""
    cases: list[CaseFiles] = []
    for folder in folders:
        cases.extend(discover_cohort(folder))
    _check_unique(cases, " + ".join(map(str, folders)))
    return cases


def _check_unique(cases: list[CaseFiles], where: str) -> None:
    seen: set[str] = set()
    for case in cases:
        if case.case_id in seen:
            raise InputError(f"{where}: case id '{case.case_id}' appears more than once; case ids must be unique")
        seen.add(case.case_id)


def _looks_like_case_file(path: Path) -> bool:
    return path.is_file() and file_role(path) is not None


def _inside(folder: Path, value: str, manifest: Path, number: int) -> str:
    """Join a manifest path to its folder; refuse absolute paths and `..` that could escape it.

    The check is on the text, so a cohort may still use symbolic links to shared storage.
    """
    relative = Path(value.replace("\\", "/"))
    if relative.is_absolute() or value.startswith(("/", "\\")) or ".." in relative.parts:
        raise InputError(
            f"{manifest}: row {number} path '{value}' points outside the cohort folder; use paths relative to it"
        )
    return str(folder / relative)


def check_case_id(case_id: str, where: str) -> str:
    """Refuse case ids that cannot safely name a folder or file (separators, dots, control characters)."""
    if not case_id.strip() or case_id in (".", "..") or case_id.startswith("."):
        raise InputError(f"{where}: case id '{case_id}' is empty or starts with a dot; use a plain name")
    if any(c in case_id for c in "/\\") or any(ord(c) < 32 for c in case_id):
        raise InputError(f"{where}: case id {case_id!r} contains a path separator or control character")
    return case_id


def _manifest_rows(path: Path) -> list:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read manifest ({exc}); save it as UTF-8") from None
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: manifest is not valid JSON (line {exc.lineno}: {exc.msg})") from None
        rows = rows.get("cases") if isinstance(rows, dict) else rows
    else:
        try:
            rows = list(csv.DictReader(io.StringIO(text)))
        except csv.Error as exc:
            raise InputError(f"{path}: manifest is not valid CSV ({exc})") from None
    if not isinstance(rows, list) or not rows:
        raise InputError(f"{path}: manifest lists no cases; expected columns {', '.join(MANIFEST_COLUMNS)}")
    return rows


def read_manifest(path: str | os.PathLike) -> list[CaseFiles]:
    """The cases a manifest (CSV or JSON list of rows) names, with paths joined to its folder."""
    path = Path(path)
    cases = []
    for number, row in enumerate(_manifest_rows(path), start=1):
        if not isinstance(row, dict):
            raise InputError(f"{path}: row {number} is not a record with named columns")
        row = {str(k): ("" if v is None else str(v).strip()) for k, v in row.items() if k is not None}
        missing = [c for c in ("case_id", *MODALITIES) if not row.get(c)]
        if missing:
            raise InputError(f"{path}: row {number} lacks {', '.join(missing)}")
        case_id = check_case_id(row["case_id"], f"{path}: row {number}")
        roles = [c for c in MANIFEST_COLUMNS if c not in ("case_id", "population")]
        files = {k: _inside(path.parent, row[k], path, number) for k in roles if row.get(k)}
        cases.append(
            CaseFiles(
                case_id=case_id,
                modalities={m: files.pop(m) for m in MODALITIES},
                population=row.get("population") or "unknown",
                scheme=label_scheme(files.get("seg")),
                **files,
            )
        )
    return cases


def write_manifest(folder: str | os.PathLike, cases: list[CaseFiles], name: str = MANIFEST_CSV) -> Path:
    """Write `folder/name` (.csv or .json) listing `cases` with paths relative to `folder`."""
    folder = Path(folder)
    rows = []
    for case in cases:
        row = {"case_id": case.case_id, "population": case.population}
        for key in MANIFEST_COLUMNS[2:]:
            value = case.modalities.get(key) or getattr(case, key, None)
            row[key] = _relative(folder, value) if value else ""
        rows.append(row)
    target = folder / name
    if target.suffix.lower() == ".json":
        write_text_atomic(target, json.dumps({"cases": rows}, indent=2, ensure_ascii=False) + "\n")
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(target, buffer.getvalue())
    return target


def _relative(folder: Path, value: str) -> str:
    relative = os.path.relpath(Path(value).absolute(), folder.absolute())
    if relative.startswith(".."):
        raise OutputError(f"{value}: lies outside the cohort folder {folder}; a manifest only lists files inside it")
    return Path(relative).as_posix()
