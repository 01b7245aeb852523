"""Property tests over the readers: random bytes and mutated headers only ever raise InputError."""

from __future__ import annotations

import gzip
import io
import tempfile
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from MedSegLensLib.data import read_label_volume, read_volume
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
        "NRRD0004", "type: short", "dimension: 3", "space: left-posterior-superior", "sizes: 4 5 6",
        "space directions: (1,0,0) (0,1.5,0) (0,0,2)", "kinds: domain domain domain", "endian: little",
        "encoding: raw", "space origin: (0,0,0)",
    ]


NIFTI = _valid_nifti_bytes()
NRRD_DATA = (np.arange(120, dtype=np.int16) % 5 + 1).tobytes()


def _read_everything(path: Path) -> None:
    """Both reader entry points must either succeed or raise InputError."""
    for call in (lambda: read_volume(path), lambda: read_label_volume(path, (0, 1, 2, 3), {4: 3})):
        try:
            call()
        except InputError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)


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


@FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(0, 351), st.integers(0, 255)), min_size=1, max_size=8),
    compress=st.booleans(),
    cut=st.integers(0, 200),
)
def test_mutated_nifti_headers(edits, compress, cut):
    data = bytearray(NIFTI)
    for offset, value in edits:
        data[offset] = value
    payload = bytes(data[: len(data) - cut])
    _write_and_read("x.nii.gz" if compress else "x.nii", gzip.compress(payload) if compress else payload)


_FIELD_VALUES = st.one_of(
    st.sampled_from([
        "0", "-1", "1e308", "nan", "(nan,nan,nan)", "(1,0) (0,1)", "none (1,0,0) (0,1,0)", "LIST", "../x.raw",
        "scanner-xyz", "right-anterior-superior", "gzip", "bzip2", "ascii", "big", "4 5", "4 5 6 7", "99999 99999 99999",
        "double", "block", "uchar", "(1,0,0) (0,1,0) (0,0,1) (1,1,1)", "",
    ]),
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
