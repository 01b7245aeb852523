"""Tiny BraTS-style cases written as real NIfTI files, for the scene tests.

Every voxel's content is a function of its RAS position, so two files with
different voxel orders (one with flipped and permuted axes) hold the same
physical image: results must agree in physical space.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from MedSegLensLib.data import MODALITIES, Case, Grid, read_case, write_volume

SHAPE = (16, 18, 20)
TUMOUR_CENTRE_RAS = np.array([4.0, -3.0, 6.0])

# Voxel axes along R, A, S with an origin: the plain case.
RAS_AFFINE = np.array(
    [
        [1.5, 0.0, 0.0, -12.0],
        [0.0, 1.5, 0.0, -14.0],
        [0.0, 0.0, 2.0, -14.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
# The same field of view with permuted and flipped axes (PSL): i runs A->P, j I->S, k R->L.
FLIPPED_AFFINE = np.array(
    [
        [0.0, 0.0, -1.5, -12.0 + 1.5 * (SHAPE[0] - 1)],
        [-1.5, 0.0, 0.0, -14.0 + 1.5 * (SHAPE[1] - 1)],
        [0.0, 2.0, 0.0, -14.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
AFFINES = {"ras": RAS_AFFINE, "flipped": FLIPPED_AFFINE}


def flipped_shape() -> tuple[int, int, int]:
    """FLIPPED_AFFINE's voxel axes are (A, S, R): the same grid seen in another order."""
    return (SHAPE[1], SHAPE[2], SHAPE[0])


def ras_of_voxels(shape, affine) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).astype(float)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def labels_at(ras: np.ndarray) -> np.ndarray:
    """BraTS labels as nested shells around the tumour centre (mm)."""
    distance = np.linalg.norm((ras - TUMOUR_CENTRE_RAS) / np.array([1.0, 1.2, 1.0]), axis=-1)
    labels = np.zeros(ras.shape[:-1], np.uint8)
    labels[distance < 9.0] = 2
    labels[distance < 6.0] = 3
    labels[distance < 3.5] = 1
    return labels


def images_at(ras: np.ndarray) -> list[np.ndarray]:
    labels = labels_at(ras)
    base = 100.0 + 2.0 * ras[..., 0] - 1.0 * ras[..., 1] + 0.5 * ras[..., 2]
    bumps = [0.0, 60.0, 40.0, 80.0]
    return [(base + bump * (labels > 0) + 7.0 * index).astype(np.float32) for index, bump in enumerate(bumps)]


def write_case(folder: Path, kind: str = "ras", case_id: str = "Tiny-001") -> Path:
    """Write one case (four modalities and -seg) as BraTS 2023 NIfTI files; returns its folder."""
    affine = AFFINES[kind]
    shape = SHAPE if kind == "ras" else flipped_shape()
    grid = Grid(shape, affine)
    ras = ras_of_voxels(shape, affine)
    case_folder = Path(folder) / case_id
    for modality, image in zip(MODALITIES, images_at(ras)):
        write_volume(image, grid, case_folder / f"{case_id}-{modality}.nii.gz")
    write_volume(labels_at(ras), grid, case_folder / f"{case_id}-seg.nii.gz", dtype=np.uint8)
    return case_folder


def load_case(folder: Path, kind: str = "ras", case_id: str = "Tiny-001") -> Case:
    return read_case(write_case(folder, kind, case_id))


def canonical_voxel(case: Case, ras) -> tuple[int, int, int]:
    """Nearest voxel of `case.grid` to a RAS point."""
    ijk = np.linalg.inv(case.grid.affine) @ np.append(np.asarray(ras, dtype=float), 1.0)
    return tuple(int(v) for v in np.round(ijk[:3]))
