"""Finding a case's files by BraTS naming (2023+ and 2021) and loading the case."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .case import MODALITIES, Case, load_case
from .volumes import image_suffix, strip_image_suffix

# File-name endings (before the extension) for each naming scheme.
SCHEMES: dict[str, dict[str, str]] = {
    "brats2023": {
        "-t1n": "t1n",
        "-t1c": "t1c",
        "-t2w": "t2w",
        "-t2f": "t2f",
        "-seg": "seg",
        "-tissue": "tissue",
        "-atlas": "atlas",
    },
    "brats2021": {
        "_t1": "t1n",
        "_t1ce": "t1c",
        "_t2": "t2w",
        "_flair": "t2f",
        "_seg": "seg",
        "_tissue": "tissue",
        "_atlas": "atlas",
    },
}
# BraTS 2021 labels enhancing tumour 4; MedSegLens (like BraTS 2023) uses 3.
LABEL_MAPS = {"brats2023": {}, "brats2021": {4: 3}}


@dataclass
class CaseFiles:
    """Where one case's files are; what `load` needs to build a `Case`."""

    case_id: str
    modalities: dict[str, str]
    seg: str | None = None
    tissue: str | None = None
    population: str = "unknown"
    scheme: str = "brats2023"
    atlas: str | None = None

    def load(self, with_labels: bool = True) -> Case:
        return load_case(
            self.modalities,
            label_file=self.seg if with_labels else None,
            tissue_file=self.tissue if with_labels else None,
            case_id=self.case_id,
            population=self.population,
            label_map=LABEL_MAPS[self.scheme],
        )


def file_role(path: str | os.PathLike) -> tuple[str, str, str] | None:
    """(scheme, role, case-id part) of a file by its name ending; None when it is no case file."""
    if not image_suffix(path):
        return None
    stem = strip_image_suffix(path)
    for scheme, endings in SCHEMES.items():
        for ending, role in endings.items():
            if stem.lower().endswith(ending.lower()):
                return scheme, role, stem[: len(stem) - len(ending)]
    return None


def label_scheme(label_file: str | os.PathLike | None) -> str:
    """The label convention of a segmentation file: BraTS 2021 when named `*_seg`, else 2023."""
    hit = file_role(label_file) if label_file else None
    return hit[0] if hit and hit[1] == "seg" else "brats2023"


def case_id_from_files(paths: list[str | os.PathLike]) -> str:
    """A case id for explicitly named files: their common BraTS prefix, else their folder's name."""
    prefixes = {hit[2] for hit in map(file_role, paths) if hit}
    if len(prefixes) == 1 and (prefix := prefixes.pop().strip(" ._-")):
        return prefix
    first = Path(paths[0]).resolve()
    return first.parent.name or strip_image_suffix(first)


def case_files_from_paths(
    modalities: dict[str, str | os.PathLike],
    seg: str | os.PathLike | None = None,
    tissue: str | os.PathLike | None = None,
    case_id: str | None = None,
    population: str = "unknown",
) -> CaseFiles:
    """`CaseFiles` for four explicitly named modality files (any names) and optional maps."""
    missing = [m for m in MODALITIES if not modalities.get(m)]
    if missing:
        raise InputError(f"missing modality {', '.join(missing)}: give all of {', '.join(MODALITIES)}")
    files = {m: str(modalities[m]) for m in MODALITIES}
    return CaseFiles(
        case_id=case_id or case_id_from_files(list(files.values())),
        modalities=files,
        seg=str(seg) if seg else None,
        tissue=str(tissue) if tissue else None,
        population=population,
        scheme=label_scheme(seg),
    )


def find_case_files(folder: str | os.PathLike, population: str = "unknown") -> CaseFiles:
    """Identify the modality, label and tissue files of a BraTS case folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: case folder not found")
    found: dict[str, dict[str, str]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        hit = file_role(path)
        if hit is None:
            continue
        scheme, role, _ = hit
        roles = found.setdefault(scheme, {})
        if role in roles:
            raise InputError(f"{folder}: two files for {role}: {Path(roles[role]).name} and {path.name}; keep one")
        roles[role] = str(path)
    if not found:
        raise InputError(
            f"{folder}: no BraTS image files found; expected names like <case>-t1n.nii.gz (2023) or <case>_t1.nii.gz "
            "(2021)"
        )
    scheme, roles = max(found.items(), key=lambda item: sum(m in item[1] for m in MODALITIES))
    missing = [m for m in MODALITIES if m not in roles]
    if missing:
        expected = {v: k for k, v in SCHEMES[scheme].items()}
        names = ", ".join(f"*{expected[m]}.nii.gz" for m in missing)
        raise InputError(f"{folder}: missing modality {', '.join(missing)} (no file named {names})")
    return CaseFiles(
        case_id=folder.name,
        modalities={m: roles[m] for m in MODALITIES},
        seg=roles.get("seg"),
        tissue=roles.get("tissue"),
        atlas=roles.get("atlas"),
        population=population,
        scheme=scheme,
    )


def read_case(path: str | os.PathLike, population: str = "unknown", with_labels: bool = True) -> Case:
    """Load a case from a BraTS folder (either naming scheme)."""
    return find_case_files(path, population).load(with_labels=with_labels)
