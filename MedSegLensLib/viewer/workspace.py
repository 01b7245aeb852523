"""The viewer's workspace: one folder that holds everything a QA session reads or writes.

Layout (paths in `workspace.json` are relative to the workspace folder):

    workspace.json                        index: cases, Dice, failure flags, overlays
    cohorts/<population>/<case>/...       BraTS-named case files (`medseglens synth`)
    predictions/<model>/<case>-seg.nii.gz model segmentations (optional)
    latents/<sae>/<case>/*.nii.gz         latent activation maps on the case grid (optional)
    models/<arch>/                        model folders (safetensors + JSON)
    saes/<name>/                          SAE folders (with latents.json from `medseglens interpret`)
    triage/worklist.json                  a triage worklist (`medseglens triage`), named by "triage" (optional)
    accepted/<case>/<name>.seg.nrrd       accepted segmentations, never overwritten,
    accepted/<case>/<name>.provenance.json  each with its provenance

Without `workspace.json` the cases are discovered under `cohorts/<population>/`.
Every path is resolved inside the workspace folder (symbolic links included):
nothing the viewer reads or writes lies outside it.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..data import CaseFiles, find_case_files
from ..errors import InputError, ParameterError

INDEX_NAME = "workspace.json"
INDEX_FORMAT = "medseglens-workspace"
INDEX_VERSION = 1
COHORTS_DIR = "cohorts"
ACCEPTED_DIR = "accepted"
DICE_REGIONS = ("ET", "TC", "WT", "ED")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def dice_text(dice: dict) -> str:
    """Dice per region as one short line ("—" when there is no reference)."""
    parts = [f"{region} {dice[region]:.2f}" for region in DICE_REGIONS if dice.get(region) is not None]
    return " · ".join(parts) if parts else "—"


def check_name(name: str, what: str) -> str:
    """A case id or file stem usable as one path component: no separators, no dot-dot, no hidden files."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise ParameterError(
            f"{what} {name!r} is not a safe name; use letters, digits, '.', '_' and '-' (no path separators)"
        )
    return name


@dataclass(frozen=True)
class Overlay:
    """A precomputed latent activation map of one case, with what is known about the latent.

    `sae` names the SAE (an entry of `models[].saes`) whose latent it is; None means the default SAE.
    """

    name: str
    file: str
    latent: int | None = None
    category: str = ""
    description: str = ""
    specificity: float | None = None
    sae: str | None = None


@dataclass(frozen=True)
class SaeEntry:
    """An SAE of a model: its folder and what other tools found out about its latents.

    `interpretation`: `latents.json` written by `medseglens interpret` (default: the SAE folder's own
    `latents.json` when present); `populations`: `populations.json` from `medseglens diff populations`.
    """

    name: str
    folder: str
    interpretation: str | None = None
    populations: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    """A segmentation model of the workspace and the SAEs trained on it."""

    name: str
    folder: str
    saes: tuple[SaeEntry, ...] = ()

    def sae(self, name: str) -> SaeEntry:
        for entry in self.saes:
            if entry.name == name:
                return entry
        raise ParameterError(f"model {self.name} has no SAE named {name!r}")


@dataclass
class WorkspaceCase:
    """One case of the index: where its files are and how the model did on it."""

    case_id: str
    population: str
    folder: str
    prediction: str | None = None
    dice: dict[str, float | None] = field(default_factory=dict)
    failure: bool = False
    overlays: list[Overlay] = field(default_factory=list)

    def overlay(self, name: str) -> Overlay:
        for item in self.overlays:
            if item.name == name:
                return item
        raise ParameterError(f"case {self.case_id} has no overlay named {name!r}")


@dataclass
class Workspace:
    root: Path
    cases: list[WorkspaceCase]
    default_model: str | None = None  # a model folder (relative path)
    default_sae: str | None = None  # an SAE folder (relative path)
    models: list[ModelEntry] = field(default_factory=list)
    triage: str | None = None  # a triage output folder or its worklist.json (relative path): cases by risk

    def analysis(self) -> tuple[ModelEntry, SaeEntry] | None:
        """The model and SAE the latent browser and steering use: the default SAE's, else the first listed."""
        pairs = [(model, sae) for model in self.models for sae in model.saes]
        for model, sae in pairs:
            if _same_path(sae.folder, self.default_sae) and (
                not self.default_model or _same_path(model.folder, self.default_model)
            ):
                return model, sae
        return pairs[0] if pairs else None

    def model_entry(self, name: str) -> ModelEntry:
        for model in self.models:
            if model.name == name:
                return model
        raise ParameterError(f"{self.root / INDEX_NAME}: no model named {name!r}")

    def resolve(self, relative: str, what: str = "path") -> Path:
        """The absolute path of a workspace-relative path; refuses anything that leaves the workspace."""
        return resolve_inside(self.root, relative, what)

    def case(self, case_id: str) -> WorkspaceCase:
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise ParameterError(f"{self.root / INDEX_NAME}: no case named {case_id!r}")

    def case_files(self, case: WorkspaceCase) -> CaseFiles:
        """The case's BraTS files, each checked to lie inside the workspace."""
        folder = self.resolve(case.folder, f"case {case.case_id} folder")
        files = find_case_files(folder, population=case.population)
        for path in [*files.modalities.values(), files.seg, files.tissue]:
            if path is not None:
                resolve_inside(self.root, os.path.relpath(path, self.root), f"case {case.case_id} file")
        files.case_id = case.case_id
        return files

    def accepted_dir(self, case_id: str) -> Path:
        return self.root / ACCEPTED_DIR / check_name(case_id, "case id")


def _same_path(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and os.path.normpath(a) == os.path.normpath(b)


def resolve_inside(root: Path, relative: str, what: str = "path") -> Path:
    """Resolve `relative` under `root` (following links) and refuse a result outside `root`."""
    if not isinstance(relative, str) or not relative or os.path.isabs(relative):
        raise InputError(f"{root / INDEX_NAME}: {what} {relative!r} must be a path relative to the workspace")
    base = root.resolve()
    candidate = (base / relative).resolve()
    if candidate != base and base not in candidate.parents:
        raise InputError(f"{root / INDEX_NAME}: {what} {relative!r} points outside the workspace; keep files inside it")
    return candidate


def read_workspace(root: str | os.PathLike) -> Workspace:
    """Read `workspace.json`, or discover `cohorts/<population>/<case>/` when there is no index."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: workspace folder not found; pass an existing folder to --workspace")
    index = root / INDEX_NAME
    if not index.is_file():
        return Workspace(root=root, cases=_discover_cases(root))
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{index}: cannot read the workspace index ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{index}: not valid JSON (line {exc.lineno}: {exc.msg}); fix or delete the file") from None
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise InputError(f'{index}: not a MedSegLens workspace index ("format" must be {INDEX_FORMAT!r})')
    if data.get("version") != INDEX_VERSION:
        raise InputError(
            f"{index}: workspace index version {data.get('version')!r} is not supported (expected {INDEX_VERSION})"
        )
    rows = data.get("cases")
    if not isinstance(rows, list):
        raise InputError(f'{index}: "cases" must be a list')
    cases = [_parse_case(row, number, index) for number, row in enumerate(rows, start=1)]
    ids = [case.case_id for case in cases]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise InputError(f"{index}: case id {duplicate!r} appears twice; case ids must be unique")
    models = _parse_models(data.get("models") or [], index)
    workspace = Workspace(
        root=root,
        cases=cases,
        default_model=data.get("default_model"),
        default_sae=data.get("default_sae"),
        models=models,
        triage=_optional_path(data.get("triage"), '"triage"', index),
    )
    if workspace.triage is not None:
        workspace.resolve(workspace.triage, "triage worklist")
    for model in models:
        workspace.resolve(model.folder, f"model {model.name!r} folder")
        for sae in model.saes:
            for what, path in (
                ("folder", sae.folder),
                ("interpretation", sae.interpretation),
                ("populations", sae.populations),
            ):
                if path is not None:
                    workspace.resolve(path, f"model {model.name!r} SAE {sae.name!r} {what}")
    sae_names = {sae.name for model in models for sae in model.saes}
    for case in cases:
        workspace.resolve(case.folder, f"case {case.case_id} folder")
        if case.prediction:
            workspace.resolve(case.prediction, f"case {case.case_id} prediction")
        for overlay in case.overlays:
            workspace.resolve(overlay.file, f"case {case.case_id} overlay {overlay.name!r}")
            if overlay.sae is not None and overlay.sae not in sae_names:
                raise InputError(
                    f"{index}: case {case.case_id}: overlay {overlay.name!r} names SAE {overlay.sae!r}, "
                    'which no model lists; add it to "models" or drop "sae"'
                )
    return workspace


def write_workspace_index(workspace: Workspace) -> Path:
    """Write `workspace.json` atomically (the demo job and tests build workspaces with it)."""
    from ..fileio import write_json_atomic

    data = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "default_model": workspace.default_model,
        "default_sae": workspace.default_sae,
        "triage": workspace.triage,
        "models": [
            {"name": model.name, "folder": model.folder, "saes": [sae.__dict__ for sae in model.saes]}
            for model in workspace.models
        ],
        "cases": [
            {
                "case_id": case.case_id,
                "population": case.population,
                "folder": case.folder,
                "prediction": case.prediction,
                "dice": case.dice,
                "failure": case.failure,
                "overlays": [overlay.__dict__ for overlay in case.overlays],
            }
            for case in workspace.cases
        ],
    }
    target = workspace.root / INDEX_NAME
    write_json_atomic(target, data)
    return target


def _discover_cases(root: Path) -> list[WorkspaceCase]:
    cohorts = root / COHORTS_DIR
    if not cohorts.is_dir():
        raise InputError(f"{root}: no {INDEX_NAME} and no {COHORTS_DIR}/ folder; this is not a MedSegLens workspace")
    cases = []
    for population in sorted(p for p in cohorts.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for folder in sorted(p for p in population.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = find_case_files(folder, population=population.name)
            cases.append(
                WorkspaceCase(
                    case_id=check_name(files.case_id, f"{folder}: case id"),
                    population=population.name,
                    folder=os.path.relpath(folder, root),
                )
            )
    if not cases:
        raise InputError(f"{cohorts}: no case folders found; create the cohorts with `medseglens synth` first")
    return cases


def _parse_case(row: object, number: int, index: Path) -> WorkspaceCase:
    if not isinstance(row, dict):
        raise InputError(f"{index}: case {number} must be an object")
    missing = [key for key in ("case_id", "folder") if not isinstance(row.get(key), str) or not row.get(key)]
    if missing:
        raise InputError(f"{index}: case {number} lacks {', '.join(missing)}")
    try:
        case_id = check_name(row["case_id"], "case id")
    except ParameterError as exc:
        raise InputError(f"{index}: case {number}: {exc}") from None
    return WorkspaceCase(
        case_id=case_id,
        population=str(row.get("population") or "unknown"),
        folder=row["folder"],
        prediction=row.get("prediction") or None,
        dice=_parse_dice(row.get("dice") or {}, case_id, index),
        failure=bool(row.get("failure", False)),
        overlays=[_parse_overlay(item, case_id, index) for item in row.get("overlays") or []],
    )


def _optional_path(value: object, what: str, index: Path) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InputError(f"{index}: {what} must be a path relative to the workspace")
    return value


def _parse_models(rows: object, index: Path) -> list[ModelEntry]:
    """The "models" list: each model's folder and SAEs (folder, interpretation, populations)."""
    if not isinstance(rows, list):
        raise InputError(f'{index}: "models" must be a list of {{name, folder, saes}}')
    models = []
    for number, row in enumerate(rows, start=1):
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("folder"), str)
            or not isinstance(row.get("saes", []), list)
        ):
            raise InputError(f'{index}: model {number} needs a "folder" and a list of "saes"')
        name = _entry_name(row.get("name"), f"model {number}", index)
        saes = []
        for sae_number, sae in enumerate(row.get("saes", []), start=1):
            what = f"model {name!r} SAE {sae_number}"
            if not isinstance(sae, dict) or not isinstance(sae.get("folder"), str):
                raise InputError(f'{index}: {what} needs a "folder"')
            saes.append(
                SaeEntry(
                    name=_entry_name(sae.get("name"), what, index),
                    folder=sae["folder"],
                    interpretation=_optional_path(sae.get("interpretation"), f"{what} interpretation", index),
                    populations=_optional_path(sae.get("populations"), f"{what} populations", index),
                )
            )
        models.append(ModelEntry(name=name, folder=row["folder"], saes=tuple(saes)))
    listed = [m.name for m in models] + [s.name for m in models for s in m.saes]
    duplicate = next((n for n in listed if listed.count(n) > 1), None)
    if duplicate:
        raise InputError(
            f'{index}: the name {duplicate!r} is used twice in "models"; model and SAE names must be unique'
        )
    return models


def _entry_name(name: object, what: str, index: Path) -> str:
    try:
        return check_name(name, f"{what} name")
    except ParameterError as exc:
        raise InputError(f"{index}: {exc}") from None


def _parse_dice(dice: object, case_id: str, index: Path) -> dict[str, float | None]:
    if not isinstance(dice, dict):
        raise InputError(f'{index}: case {case_id}: "dice" must map regions to numbers')
    parsed: dict[str, float | None] = {}
    for region, value in dice.items():
        if value is None:
            parsed[str(region)] = None
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not 0 <= value <= 1
        ):
            raise InputError(f"{index}: case {case_id}: Dice for {region} is {value!r}; expected a number in [0, 1]")
        parsed[str(region)] = float(value)
    return parsed


def _parse_overlay(item: object, case_id: str, index: Path) -> Overlay:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("file"), str):
        raise InputError(f'{index}: case {case_id}: each overlay needs a "name" and a "file"')
    latent = item.get("latent")
    if latent is not None and (isinstance(latent, bool) or not isinstance(latent, int) or latent < 0):
        raise InputError(
            f"{index}: case {case_id}: overlay {item['name']!r} latent index {latent!r} must be a non-negative integer"
        )
    specificity = item.get("specificity")
    if specificity is not None and (
        isinstance(specificity, bool) or not isinstance(specificity, (int, float)) or not math.isfinite(specificity)
    ):
        raise InputError(f"{index}: case {case_id}: overlay {item['name']!r} specificity must be a number")
    return Overlay(
        name=item["name"],
        file=item["file"],
        latent=latent,
        category=str(item.get("category") or ""),
        description=str(item.get("description") or ""),
        specificity=None if specificity is None else float(specificity),
        sae=None if item.get("sae") is None else str(item["sae"]),
    )
