"""Property tests over the readers: random bytes and mutated headers give a sound volume or a one-line InputError."""

from __future__ import annotations

import gzip
import io
import math
import struct
import tempfile
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from MedSegLensLib.data import read_label_volume, read_volume
from MedSegLensLib.data.volumes import SPACING_RANGE_MM, Volume
from MedSegLensLib.errors import InputError

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SUFFIXES = [".nii", ".nii.gz", ".nrrd", ".nhdr"]


def _valid_nifti_bytes() -> bytes:
    array = (np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) % 7) + 1
    image = nib.Nifti1Image(array, np.diag([1.0, 1.5, 2.0, 1.0]))
    buffer = io.BytesIO()
    file_map = nib.Nifti1Image.make_file_map({"image": buffer, "header": buffer})
    image.to_file_map(file_map)
    return buffer.getvalue()


def _valid_nrrd_header() -> list[str]:
    return [
        "NRRD0004",
        "type: short",
        "dimension: 3",
        "space: left-posterior-superior",
        "sizes: 4 5 6",
        "space directions: (1,0,0) (0,1.5,0) (0,0,2)",
        "kinds: domain domain domain",
        "endian: little",
        "encoding: raw",
        "space origin: (0,0,0)",
    ]


NIFTI = _valid_nifti_bytes()
NRRD_DATA = (np.arange(120, dtype=np.int16) % 5 + 1).tobytes()


def _check_volume(volume: Volume) -> None:
    """What a reader promises about any volume it returns, however odd the file was."""
    array, grid = volume.array, volume.grid
    assert array.ndim == 3 and min(array.shape) >= 2 and tuple(array.shape) == tuple(grid.shape)
    assert np.all(np.isfinite(grid.affine)) and abs(np.linalg.det(grid.affine[:3, :3])) > 0
    assert all(SPACING_RANGE_MM[0] <= s <= SPACING_RANGE_MM[1] for s in grid.spacing), grid.spacing
    if np.issubdtype(array.dtype, np.floating):
        assert np.all(np.isfinite(array))


def _read_everything(path: Path) -> None:
    """Both reader entry points either return a volume that keeps the readers' promises or raise one-line InputError."""
    try:
        image = read_volume(path)
    except InputError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    else:
        _check_volume(image)
        assert np.any(image.array), "an all-zero image must be refused"
    try:
        labels = read_label_volume(path, (0, 1, 2, 3), {4: 3})
    except InputError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    else:
        _check_volume(labels)
        assert labels.array.dtype == np.uint8 and set(np.unique(labels.array).tolist()) <= {0, 1, 2, 3}


def _write_and_read(name: str, payload: bytes, extra: dict[str, bytes] | None = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(payload)
        for other, data in (extra or {}).items():
            (Path(folder) / other).write_bytes(data)
        _read_everything(path)


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), payload=st.binary(max_size=2048))
def test_random_bytes(suffix, payload):
    _write_and_read(f"x{suffix}", payload)


# float32 fields a reader must judge: pixdim[1..3], scl_slope, scl_inter, the sform's diagonal, and every voxel
FLOAT_OFFSETS = [80, 84, 88, 112, 116, 280, 300, 320] + [352 + 4 * i for i in range(4 * 5 * 6)]
SPECIAL_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, 1e-30, 1e30])


@FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(0, 351), st.integers(0, 255)), max_size=8),
    floats=st.lists(st.tuples(st.sampled_from(FLOAT_OFFSETS), SPECIAL_FLOATS | st.floats(width=32)), max_size=3),
    compress=st.booleans(),
    cut=st.one_of(st.just(0), st.integers(1, 200)),  # half the files complete, so many reads succeed and are checked
)
@example(edits=[], floats=[(352 + 4 * 7, math.nan)], compress=False, cut=0)  # every run: one NaN voxel,
@example(edits=[], floats=[(300, 1e30)], compress=True, cut=0)  # an absurd spacing,
@example(edits=[], floats=[(112, math.inf)], compress=False, cut=0)  # an infinite scale slope
def test_mutated_nifti_files(edits, floats, compress, cut):
    data = bytearray(NIFTI)
    for offset, value in edits:
        data[offset] = value
    for offset, value in floats:  # NaN, Inf, zero, huge and tiny spacings, slopes and voxels
        struct.pack_into("<f", data, offset, value)
    payload = bytes(data[: len(data) - cut])
    _write_and_read("x.nii.gz" if compress else "x.nii", gzip.compress(payload) if compress else payload)


_FIELD_VALUES = st.one_of(
    st.sampled_from(
        [
            "0",
            "-1",
            "1e308",
            "nan",
            "(nan,nan,nan)",
            "(1,0) (0,1)",
            "none (1,0,0) (0,1,0)",
            "LIST",
            "../x.raw",
            "scanner-xyz",
            "right-anterior-superior",
            "gzip",
            "bzip2",
            "ascii",
            "big",
            "4 5",
            "4 5 6 7",
            "99999 99999 99999",
            "double",
            "block",
            "uchar",
            "(1,0,0) (0,1,0) (0,0,1) (1,1,1)",
            "",
        ]
    ),
    st.text(max_size=30),
)


@FUZZ
@given(
    changes=st.lists(st.tuples(st.integers(1, 9), _FIELD_VALUES), max_size=4),
    detached=st.booleans(),
    data_cut=st.integers(0, 240),
)
def test_mutated_nrrd_headers(changes, detached, data_cut):
    lines = _valid_nrrd_header()
    for index, value in changes:
        key = lines[index].split(":")[0]
        lines[index] = f"{key}: {value}"
    data = NRRD_DATA[: len(NRRD_DATA) - data_cut]
    if detached:
        header = "\n".join(lines + ["data file: x.raw"]) + "\n"
        _write_and_read("x.nhdr", header.encode("utf-8", "replace"), {"x.raw": data})
    else:
        _write_and_read("x.nrrd", ("\n".join(lines) + "\n\n").encode("utf-8", "replace") + data)


def test_fuzz_seeds_are_readable():
    """The unmutated seeds are valid files, so mutations start from real formats."""
    with tempfile.TemporaryDirectory() as folder:
        nii = Path(folder) / "x.nii"
        nii.write_bytes(NIFTI)
        assert read_volume(nii).array.shape == (4, 5, 6)
        nrrd_path = Path(folder) / "x.nrrd"
        nrrd_path.write_bytes(("\n".join(_valid_nrrd_header()) + "\n\n").encode() + NRRD_DATA)
        volume = read_volume(nrrd_path)
        assert volume.array.shape == (4, 5, 6) and volume.grid.spacing == (1.0, 1.5, 2.0)
        assert nrrd.read_header(str(nrrd_path))["sizes"].tolist() == [4, 5, 6]
