"""Reading and writing single 3D volumes (NIfTI .nii/.nii.gz, NRRD .nrrd/.nhdr).

Every reader checks the header before touching the voxels (so a corrupt header
that declares billions of voxels is refused, not allocated) and turns each
failure into a one-line `InputError` that names the file. Writers are atomic.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np

from ..errors import InputError, OutputError
from ..fileio import atomic_path, ensure_parent
from .geometry import Grid
from .nrrd_header import check_detached_data_file, nrrd_affine

NIFTI_SUFFIXES = (".nii.gz", ".nii")
NRRD_SUFFIXES = (".seg.nrrd", ".nrrd", ".nhdr")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + NRRD_SUFFIXES
MAX_VOXELS = int(os.environ.get("MEDSEGLENS_MAX_VOXELS", 512**3))
SPACING_RANGE_MM = (0.05, 20.0)
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_METADATA_KEY = "medseglens_metadata"
_NRRD_STANDARD_TEXT_FIELDS = {"type", "encoding", "space", "endian", "content", "data file", "datafile"}
# Writers keep these types; others are converted (nibabel refuses int64, NIfTI has no bool).
_WRITE_TYPES = {np.dtype(bool): np.uint8, np.dtype(np.int64): np.int32, np.dtype(np.uint64): np.uint32}


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
        array = _squeeze_to_3d(array, path)
    elif suffix in NRRD_SUFFIXES:
        array, header = _read_nrrd(path)
        array = _squeeze_to_3d(array, path)
        affine = nrrd_affine(header, path)
    else:
        raise InputError(f"{path}: unsupported file type; use NIfTI (.nii, .nii.gz) or NRRD (.nrrd, .nhdr)")
    grid = Grid(tuple(int(s) for s in array.shape), affine)
    _check_geometry(grid, path)
    _check_values(array, path, kind)
    return Volume(array, grid, path)


def _check_declared_shape(shape: tuple[int, ...], path: Path) -> None:
    if len(shape) < 2:
        raise InputError(f"{path}: image has {len(shape)} dimension(s); a 3D volume is expected")
    if any(int(s) <= 0 for s in shape):
        raise InputError(f"{path}: header declares an empty dimension {tuple(shape)}")
    voxels = math.prod(int(s) for s in shape)
    if voxels > MAX_VOXELS:
        raise InputError(
            f"{path}: header declares {tuple(int(s) for s in shape)} = {voxels:,} voxels, more than the "
            f"{MAX_VOXELS:,} allowed; the header is corrupt or the image must be cropped/downsampled first"
        )


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        image = nib.load(str(path), mmap=False)
    except Exception as exc:  # nibabel raises many types for bad headers
        raise InputError(f"{path}: not a readable NIfTI file ({_reason(exc)})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: not a NIfTI-1/2 image ({type(image).__name__})")
    _check_declared_shape(image.header.get_data_shape(), path)
    try:
        array = np.asarray(image.dataobj)
        affine = np.asarray(image.affine, dtype=float)
        if path.name.lower().endswith(".gz"):
            _read_gzip_to_end(path)
    except Exception as exc:  # truncated gzip, short file, bad scaling, bad dtype...
        raise InputError(
            f"{path}: voxel data cannot be read, the file is truncated or corrupt ({_reason(exc)})"
        ) from None
    return array, affine


def _read_gzip_to_end(path: Path) -> None:
    """Check the gzip CRC: nibabel stops reading once it has the voxels, so a damaged stream would pass unseen."""
    with gzip.open(path, "rb") as stream:
        while stream.read(1 << 22):
            pass


def _read_nrrd(path: Path) -> tuple[np.ndarray, dict]:
    try:
        header = nrrd.read_header(str(path))
    except Exception as exc:
        raise InputError(f"{path}: not a readable NRRD file ({_reason(exc)})") from None
    _check_declared_shape(tuple(np.asarray(header.get("sizes", [])).ravel().tolist()), path)
    check_detached_data_file(header, path)
    try:
        array, header = nrrd.read(str(path), index_order="F")
    except Exception as exc:
        raise InputError(
            f"{path}: voxel data cannot be read, the file is truncated or corrupt ({_reason(exc)})"
        ) from None
    return np.asarray(array), header


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
    real = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating) or array.dtype == bool
    if not real:
        raise InputError(
            f"{path}: voxel type {array.dtype} is not a real scalar; a single-channel 3D volume is expected"
        )
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise InputError(f"{path}: {bad} voxel(s) are NaN or Inf; fix or mask them before analysis")
    if kind == "image" and not np.any(array):
        raise InputError(f"{path}: image is empty (every voxel is zero)")


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def write_volume(
    array: np.ndarray,
    grid: Grid,
    path: str | os.PathLike,
    dtype: np.dtype | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a 3D volume in `grid`'s voxel order and affine, atomically; NIfTI or NRRD by suffix.

    `metadata` (single-line text values) goes into the file itself: NRRD key/value fields, or
    one NIfTI comment extension holding it as JSON (`read_volume_metadata` reads both back).
    """
    path = Path(path)
    suffix = image_suffix(path)
    if not suffix or suffix == ".nhdr":
        raise OutputError(f"{path}: unsupported output type; use .nii.gz, .nii or .nrrd")
    array = np.asarray(array if dtype is None else array.astype(dtype))
    array = array.astype(_WRITE_TYPES.get(array.dtype, array.dtype), copy=False)
    if tuple(array.shape) != tuple(grid.shape):
        raise ValueError(f"array shape {array.shape} does not match grid {grid.shape}")
    ensure_parent(path)
    with atomic_path(path, suffix=suffix) as tmp:
        if suffix in NIFTI_SUFFIXES:
            image = nib.Nifti1Image(array, grid.affine)
            image.header.set_qform(grid.affine, code=1)
            image.header.set_sform(grid.affine, code=1)
            image.header.set_xyzt_units("mm")
            if metadata:
                image.header.extensions.append(
                    nib.nifti1.Nifti1Extension("comment", json.dumps({_METADATA_KEY: metadata}).encode("utf-8"))
                )
            nib.save(image, str(tmp))
        else:
            lps = _LPS_TO_RAS @ grid.affine
            header = {
                "space": "left-posterior-superior",
                "space directions": lps[:3, :3].T,
                "space origin": lps[:3, 3],
                "kinds": ["domain", "domain", "domain"],
                "encoding": "gzip",
                **(metadata or {}),
            }
            nrrd.write(str(tmp), array, header, index_order="F")
    return path


def read_volume_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The text metadata `write_volume` stored in a NIfTI or NRRD file ({} when there is none)."""
    path = Path(path)
    suffix = image_suffix(path)
    if suffix in NRRD_SUFFIXES:
        try:
            header = nrrd.read_header(str(path))
        except Exception as exc:
            raise InputError(f"{path}: not a readable NRRD file ({_reason(exc)})") from None
        return {k: v for k, v in header.items() if isinstance(v, str) and k not in _NRRD_STANDARD_TEXT_FIELDS}
    try:
        image = nib.load(str(path), mmap=False)
    except Exception as exc:
        raise InputError(f"{path}: not a readable NIfTI file ({_reason(exc)})") from None
    found: dict[str, str] = {}
    for extension in getattr(image.header, "extensions", []):
        try:
            content = json.loads(extension.get_content())
        except (ValueError, TypeError):
            continue
        if isinstance(content, dict) and isinstance(content.get(_METADATA_KEY), dict):
            found.update({str(k): str(v) for k, v in content[_METADATA_KEY].items()})
    return found
