"""Real NIfTI/NRRD files for the data-layer and metrics tests, written with nibabel/pynrrd directly.

Independent of MedSegLensLib's own writers, so reader tests check the readers
against the libraries' header conventions, not against themselves.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np

MODALITY_ENDINGS = {
    "brats2023": {"t1n": "-t1n", "t1c": "-t1c", "t2w": "-t2w", "t2f": "-t2f", "seg": "-seg"},
    "brats2021": {"t1n": "_t1", "t1c": "_t1ce", "t2w": "_t2", "t2f": "_flair", "seg": "_seg"},
}
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def affine(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    out = np.diag([*map(float, spacing), 1.0])
    out[:3, 3] = origin
    return out


def smooth_image(shape, rng: np.random.Generator, offset: float = 100.0) -> np.ndarray:
    """A positive image with structure along every axis (so flips and permutations are visible)."""
    grids = np.meshgrid(*[np.linspace(0, 1, s) for s in shape], indexing="ij")
    base = offset + 40 * grids[0] + 25 * grids[1] ** 2 + 10 * np.sin(3 * grids[2])
    return (base + rng.normal(0, 1, shape)).astype(np.float32)


def tumour_labels(shape, centre=None, radii=(5, 4, 3)) -> np.ndarray:
    """Nested ellipsoids: ED shell, ET rim, NCR core (labels 2, 3, 1)."""
    centre = np.asarray(centre if centre is not None else [s / 2 for s in shape], dtype=float)
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    r = np.sqrt(sum(((g - c) / rad) ** 2 for g, c, rad in zip(grids, centre, radii)))
    labels = np.zeros(shape, np.uint8)
    labels[r < 1.0] = 2
    labels[r < 0.7] = 3
    labels[r < 0.4] = 1
    return labels


def write_nifti(path: Path, array: np.ndarray, aff: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(array, aff)
    image.header.set_sform(aff, code=1)
    image.header.set_qform(aff, code=1)
    nib.save(image, str(path))
    return path


def write_nrrd(path: Path, array: np.ndarray, aff_ras: np.ndarray, space: str = "left-posterior-superior") -> Path:
    """NRRD with the header math done by hand: LPS = diag(-1,-1,1) @ RAS, directions = affine columns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if space == "left-posterior-superior":
        world = RAS_TO_LPS @ aff_ras
    elif space == "right-anterior-superior":
        world = aff_ras
    else:
        raise ValueError(space)
    header = {
        "space": space,
        "space directions": world[:3, :3].T,
        "space origin": world[:3, 3],
        "kinds": ["domain"] * 3,
        "encoding": "gzip" if path.suffix == ".nrrd" else "raw",
    }
    nrrd.write(str(path), array, header, index_order="F", detached_header=path.suffix == ".nhdr")
    return path


def write_volume_file(path: Path, array: np.ndarray, aff: np.ndarray) -> Path:
    if path.name.endswith((".nrrd", ".nhdr")):
        return write_nrrd(path, array, aff)
    return write_nifti(path, array, aff)


def write_case(
    root: Path,
    case_id: str,
    rng: np.random.Generator,
    shape=(16, 18, 14),
    aff: np.ndarray | None = None,
    scheme: str = "brats2023",
    suffix: str = ".nii.gz",
    labels: np.ndarray | None = None,
) -> dict:
    """A BraTS case folder; returns the arrays written (by role) and the file paths."""
    aff = affine() if aff is None else aff
    folder = root / case_id
    arrays, paths = {}, {}
    for offset, role in enumerate(("t1n", "t1c", "t2w", "t2f")):
        arrays[role] = smooth_image(shape, rng, offset=100.0 + 50 * offset)
    seg = tumour_labels(shape) if labels is None else labels
    arrays["seg"] = np.where(seg == 3, 4, seg).astype(np.uint8) if scheme == "brats2021" else seg
    for role, array in arrays.items():
        paths[role] = write_volume_file(folder / f"{case_id}{MODALITY_ENDINGS[scheme][role]}{suffix}", array, aff)
    return {"arrays": arrays, "paths": paths, "folder": folder, "labels": seg}
