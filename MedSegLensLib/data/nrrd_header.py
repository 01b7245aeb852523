"""NRRD header geometry: the voxel-to-RAS affine and the detached data file.

NRRD states its world frame in the `space` field (Slicer writes LPS); MedSegLens
works in RAS like NIfTI, so each anatomical space is mapped to RAS by flipping
the axes that point the other way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError

# For each NRRD anatomical space, the sign that turns its axes into R, A, S.
_SPACE_SIGNS = {
    "right-anterior-superior": (1, 1, 1),
    "left-anterior-superior": (-1, 1, 1),
    "left-posterior-superior": (-1, -1, 1),
    "right-posterior-superior": (1, -1, 1),
    "right-anterior-inferior": (1, 1, -1),
    "left-anterior-inferior": (-1, 1, -1),
    "left-posterior-inferior": (-1, -1, -1),
    "right-posterior-inferior": (1, -1, -1),
}
_SPACE_ALIASES = {"ras": "right-anterior-superior", "las": "left-anterior-superior", "lps": "left-posterior-superior"}
# Without a `space` field ITK (and so Slicer) reads the axes as LPS.
DEFAULT_SPACE = "left-posterior-superior"


def space_to_ras(space: str, path: Path) -> np.ndarray:
    """The 4x4 matrix taking coordinates in NRRD `space` to RAS."""
    name = _SPACE_ALIASES.get(space.strip().lower(), space.strip().lower())
    if name not in _SPACE_SIGNS:
        raise InputError(f"{path}: NRRD space '{space}' is not an anatomical 3D space; re-save it in RAS or LPS")
    return np.diag([*_SPACE_SIGNS[name], 1]).astype(float)


def nrrd_affine(header: dict, path: Path) -> np.ndarray:
    """The voxel-to-RAS affine of a 3D NRRD header (non-spatial axes must already be gone)."""
    affine = np.eye(4)
    directions = header.get("space directions")
    if directions is not None:
        rows = [np.asarray(d, dtype=float).ravel() for d in directions]
        rows = [r for r in rows if r.size and not np.all(np.isnan(r))]
        if len(rows) != 3 or any(r.size != 3 for r in rows):
            raise InputError(f"{path}: NRRD 'space directions' do not describe three 3D axes; a 3D volume is expected")
        affine[:3, :3] = np.stack(rows, axis=1)
    elif "spacings" in header:
        spacings = np.asarray(header["spacings"], dtype=float).ravel()
        spacings = spacings[~np.isnan(spacings)]
        if spacings.size != 3:
            raise InputError(f"{path}: NRRD 'spacings' do not describe three axes; a 3D volume is expected")
        affine[:3, :3] = np.diag(spacings)
    origin = header.get("space origin")
    if origin is not None:
        origin = np.asarray(origin, dtype=float).ravel()
        if origin.size != 3:
            raise InputError(f"{path}: NRRD 'space origin' has {origin.size} values; 3 are expected")
        affine[:3, 3] = origin
    return space_to_ras(str(header.get("space", DEFAULT_SPACE)), path) @ affine


def check_detached_data_file(header: dict, path: Path) -> None:
    """Refuse a detached header whose data file lies outside the header's folder.

    A crafted .nhdr could otherwise make MedSegLens read (and later write out as
    an image) any file the user can read.
    """
    name = header.get("data file", header.get("datafile"))
    if name is None:
        return
    name = str(name).strip()
    if name.upper().startswith("LIST") or " " in name:
        raise InputError(f"{path}: NRRD data file lists ('{name[:40]}') are not supported; use one data file")
    if os.path.isabs(name) or ".." in Path(name).parts:
        raise InputError(f"{path}: NRRD data file '{name}' lies outside the header's folder; keep it beside the .nhdr")
    if not (path.parent / name).is_file():
        raise InputError(f"{path}: NRRD data file '{name}' not found beside the header")
