"""Reading and writing single 3D volumes (NIfTI .nii/.nii.gz, NRRD .nrrd/.nhdr).

Every reader checks the header before touching the voxels (so a corrupt header
that declares billions of voxels is refused, not allocated) and turns each
failure into a one-line `InputError` that names the file. Writers are atomic.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np

from ..errors import InputError
from ..fileio import atomic_path, ensure_parent
from .geometry import Grid

NIFTI_SUFFIXES = (".nii.gz", ".nii")
NRRD_SUFFIXES = (".seg.nrrd", ".nrrd", ".nhdr")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + NRRD_SUFFIXES
MAX_VOXELS = int(os.environ.get("MEDSEGLENS_MAX_VOXELS", 512**3))
SPACING_RANGE_MM = (0.05, 20.0)
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Volume:
    """A 3D array in the file's own voxel order with its grid."""

    array: np.ndarray
    grid: Grid
    path: Path


def image_suffix(path: str | os.PathLike) -> str:
    """The recognised image suffix of `path` ('' when it is not an image file)."""
    name = Path(path).name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), "")


def strip_image_suffix(path: str | os.PathLike) -> str:
    name = Path(path).name
    suffix = image_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else name


def read_volume(path: str | os.PathLike, kind: str = "image") -> Volume:
    """Read one 3D volume; `kind` ('image' or 'label') only shapes the error messages.

    Trailing singleton axes (X, Y, Z, 1) are accepted; 2D and true 4D images are not.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: is not a file")
    suffix = image_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        array, affine = _read_nifti(path)
    elif suffix in NRRD_SUFFIXES:
        array, affine = _read_nrrd(path)
    else:
        raise InputError(f"{path}: unsupported file type; use NIfTI (.nii, .nii.gz) or NRRD (.nrrd)")
    array = _squeeze_to_3d(array, path)
    grid = Grid(tuple(int(s) for s in array.shape), affine)
    _check_geometry(grid, path)
    _check_values(array, path, kind)
    return Volume(array, grid, path)


def _check_declared_shape(shape: tuple[int, ...], path: Path) -> None:
    if len(shape) < 2:
        raise InputError(f"{path}: image has {len(shape)} dimension(s); a 3D volume is expected")
    if any(int(s) <= 0 for s in shape):
        raise InputError(f"{path}: header declares an empty dimension {tuple(shape)}")
    voxels = int(np.prod([int(s) for s in shape], dtype=np.int64))
    if voxels > MAX_VOXELS:
        raise InputError(
            f"{path}: header declares {tuple(int(s) for s in shape)} = {voxels:,} voxels, more than the "
            f"{MAX_VOXELS:,} allowed; the header is corrupt or the image must be cropped/downsampled first"
        )


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        image = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for bad headers
        raise InputError(f"{path}: not a readable NIfTI file ({_reason(exc)})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: not a NIfTI-1/2 image ({type(image).__name__})")
    _check_declared_shape(image.header.get_data_shape(), path)
    try:
        array = np.asanyarray(image.dataobj)
    except (EOFError, OSError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: voxel data cannot be read, the file is truncated or corrupt ({_reason(exc)})") from None
    return np.asarray(array), np.asarray(image.affine, dtype=float)


def _read_nrrd(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        header = nrrd.read_header(str(path))
    except Exception as exc:
        raise InputError(f"{path}: not a readable NRRD file ({_reason(exc)})") from None
    sizes = [int(s) for s in header.get("sizes", [])]
    _check_declared_shape(tuple(sizes), path)
    try:
        array, header = nrrd.read(str(path), index_order="F")
    except Exception as exc:
        raise InputError(f"{path}: voxel data cannot be read, the file is truncated or corrupt ({_reason(exc)})") from None
    return np.asarray(array), _nrrd_affine(header, array.ndim, path)


def _nrrd_affine(header: dict, ndim: int, path: Path) -> np.ndarray:
    directions = header.get("space directions")
    affine = np.eye(4)
    if directions is not None:
        rows = [np.asarray(d, dtype=float) for d in directions if d is not None and not np.all(np.isnan(np.asarray(d, dtype=float)))]
        if len(rows) >= 3:
            affine[:3, :3] = np.stack(rows[-3:], axis=1)
    elif "spacings" in header:
        affine[:3, :3] = np.diag(np.asarray(header["spacings"], dtype=float)[-3:])
    origin = header.get("space origin")
    if origin is not None:
        affine[:3, 3] = np.asarray(origin, dtype=float)
    space = str(header.get("space", "left-posterior-superior")).lower()
    if space in ("left-posterior-superior", "lps"):
        affine = _LPS_TO_RAS @ affine
    elif space not in ("right-anterior-superior", "ras"):
        raise InputError(f"{path}: NRRD space '{space}' is not supported; use RAS or LPS")
    return affine


def _squeeze_to_3d(array: np.ndarray, path: Path) -> np.ndarray:
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        what = "2D" if array.ndim == 2 else f"{array.ndim}D {tuple(array.shape)}"
        raise InputError(f"{path}: image is {what}; a single 3D volume is expected (split 4D series first)")
    if min(array.shape) < 2:
        raise InputError(f"{path}: image of shape {tuple(array.shape)} is a single slice; a 3D volume is expected")
    return array


def _check_geometry(grid: Grid, path: Path) -> None:
    if not np.all(np.isfinite(grid.affine)):
        raise InputError(f"{path}: the voxel-to-world matrix contains NaN/Inf; fix the header")
    if abs(np.linalg.det(grid.affine[:3, :3])) < 1e-12:
        raise InputError(f"{path}: the voxel-to-world matrix is singular; fix the header")
    low, high = SPACING_RANGE_MM
    spacing = grid.spacing
    if any(not (low <= s <= high) for s in spacing):
        pretty = ", ".join(f"{s:g}" for s in spacing)
        raise InputError(f"{path}: voxel spacing ({pretty}) mm is outside {low}-{high} mm; fix the header")


def _check_values(array: np.ndarray, path: Path, kind: str) -> None:
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"{path}: voxel type {array.dtype} is not numeric")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise InputError(f"{path}: {bad} voxel(s) are NaN or Inf; fix or mask them before analysis")
    if kind == "image" and not np.any(array):
        raise InputError(f"{path}: image is empty (every voxel is zero)")


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def write_volume(array: np.ndarray, grid: Grid, path: str | os.PathLike, dtype: np.dtype | None = None) -> Path:
    """Write a 3D volume in `grid`'s voxel order and affine, atomically; NIfTI or NRRD by suffix."""
    path = Path(path)
    suffix = image_suffix(path)
    if not suffix:
        raise InputError(f"{path}: unsupported output type; use .nii.gz, .nii or .nrrd")
    array = np.asarray(array if dtype is None else array.astype(dtype))
    if tuple(array.shape) != tuple(grid.shape):
        raise ValueError(f"array shape {array.shape} does not match grid {grid.shape}")
    ensure_parent(path)
    with atomic_path(path, suffix=suffix) as tmp:
        if suffix in NIFTI_SUFFIXES:
            image = nib.Nifti1Image(array, grid.affine)
            image.header.set_qform(grid.affine, code=1)
            image.header.set_sform(grid.affine, code=1)
            image.header.set_xyzt_units("mm")
            nib.save(image, str(tmp))
        else:
            lps = _LPS_TO_RAS @ grid.affine
            header = {
                "space": "left-posterior-superior",
                "space directions": lps[:3, :3].T,
                "space origin": lps[:3, 3],
                "kinds": ["domain", "domain", "domain"],
                "encoding": "gzip",
            }
            nrrd.write(str(tmp), array, header, index_order="F")
    return path
