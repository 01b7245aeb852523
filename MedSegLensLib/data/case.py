"""The `Case`: one patient's four MRI modalities (and optional labels) on one grid.

Arrays are held in the closest-to-RAS voxel order of the first modality's grid
(`Case.grid`); `Case.source_grid` remembers the input's own order and affine so
that every output can be written back in the input's exact geometry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .geometry import Grid, from_canonical, overlap_fraction, resample_to_grid, to_canonical
from .labels import read_label_volume
from .volumes import Volume, read_volume, write_volume

MODALITIES: tuple[str, ...] = ("t1n", "t1c", "t2w", "t2f")
LABEL_VALUES: tuple[int, ...] = (0, 1, 2, 3)
LABEL_NAMES = {1: "NCR", 2: "ED", 3: "ET"}
TISSUE_NAMES = {0: "background", 1: "CSF", 2: "grey matter", 3: "white matter"}
MIN_OVERLAP = 0.5


@dataclass
class Case:
    """A case ready for computation.

    image: (4, X, Y, Z) float32 in `MODALITIES` order, canonical voxel order.
    label: (X, Y, Z) uint8 BraTS labels (0, 1 NCR, 2 ED, 3 ET) or None.
    tissue: (X, Y, Z) uint8 tissue classes (0 bg, 1 CSF, 2 GM, 3 WM) or None.
    """

    case_id: str
    image: np.ndarray
    grid: Grid
    source_grid: Grid
    label: np.ndarray | None = None
    tissue: np.ndarray | None = None
    population: str = "unknown"
    files: dict[str, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.image.shape[1:])

    def to_source(self, volume: np.ndarray) -> np.ndarray:
        """Put a volume computed on `self.grid` back into the input's own voxel order."""
        return from_canonical(volume, self.source_grid)

    def write_like_input(self, volume: np.ndarray, path: str | os.PathLike, dtype=None) -> Path:
        """Write a canonical-order volume in the input's exact geometry (shape and affine)."""
        return write_volume(self.to_source(volume), self.source_grid, path, dtype=dtype)


def load_case(
    modality_files: dict[str, str | os.PathLike],
    label_file: str | os.PathLike | None = None,
    tissue_file: str | os.PathLike | None = None,
    case_id: str | None = None,
    population: str = "unknown",
    label_map: dict[int, int] | None = None,
) -> Case:
    """Read four modality files (and optional label / tissue maps) into a `Case`.

    The first modality in `MODALITIES` order defines the grid; the others are
    reoriented and, when their grid differs, resampled onto it. `label_map`
    renames label values (BraTS 2021's ET = 4 becomes 3).
    """
    missing = [m for m in MODALITIES if m not in modality_files]
    if missing:
        raise InputError(f"missing modality {', '.join(missing)}: all of {', '.join(MODALITIES)} are needed")
    volumes = {m: read_volume(modality_files[m]) for m in MODALITIES}
    reference = volumes[MODALITIES[0]]
    ref_array, grid = to_canonical(reference.array.astype(np.float32, copy=False), reference.grid)
    channels = [ref_array]
    for name in MODALITIES[1:]:
        channels.append(_onto(volumes[name], grid, order=1).astype(np.float32, copy=False))
    image = np.stack(channels).astype(np.float32, copy=False)
    label = tissue = None
    if label_file is not None:
        label = _read_labels(label_file, grid, label_map or {}, "label", LABEL_VALUES)
    if tissue_file is not None:
        tissue = _read_labels(tissue_file, grid, {}, "tissue", tuple(TISSUE_NAMES))
    files = {m: str(modality_files[m]) for m in MODALITIES}
    if label_file is not None:
        files["seg"] = str(label_file)
    if tissue_file is not None:
        files["tissue"] = str(tissue_file)
    return Case(
        case_id=case_id or Path(modality_files[MODALITIES[0]]).resolve().parent.name,
        image=image,
        grid=grid,
        source_grid=reference.grid,
        label=label,
        tissue=tissue,
        population=population,
        files=files,
    )


def _onto(volume: Volume, grid: Grid, order: int) -> np.ndarray:
    """Bring `volume` onto the canonical `grid`: reorient, and resample only if needed."""
    array, own = to_canonical(volume.array, volume.grid)
    if own.same_as(grid):
        return array
    if overlap_fraction(own, grid) < MIN_OVERLAP:
        raise InputError(
            f"{volume.path}: grid {own.shape} at {own.orientation} does not overlap the reference "
            f"modality's field of view; the files belong to different scans or the header is wrong"
        )
    return resample_to_grid(array.astype(np.float32) if order else array, own, grid, order=order)


def _read_labels(path, grid: Grid, mapping: dict[int, int], kind: str, allowed: tuple[int, ...]) -> np.ndarray:
    hint = "relabel the file to the BraTS convention (1 NCR, 2 ED, 3 ET)" if kind == "label" else ""
    volume = read_label_volume(path, allowed, mapping, kind=kind, hint=hint)
    return _onto(volume, grid, order=0).astype(np.uint8, copy=False)
