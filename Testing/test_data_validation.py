"""Bad inputs: each gives one InputError line that names the file and says what is wrong."""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
import sys
import tracemalloc

import nibabel as nib
import nrrd as pynrrd
import numpy as np
import pytest
from conftest import subprocess_env
from datafiles import affine, smooth_image, tumour_labels, write_case, write_nifti, write_nrrd

from MedSegLensLib.data import find_case_files, read_case, read_volume
from MedSegLensLib.errors import InputError


def _error(call, *args, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def _assert_names(message: str, path, *words: str) -> None:
    assert str(path) in message, message
    for word in words:
        assert word in message, message


def test_missing_modality(tmp_path, rng):
    written = write_case(tmp_path, "c", rng)
    written["paths"]["t2f"].unlink()
    _assert_names(_error(find_case_files, written["folder"]), written["folder"], "missing modality t2f", "-t2f")


def test_two_files_for_one_modality(tmp_path, rng):
    written = write_case(tmp_path, "c", rng)
    shutil.copy(written["paths"]["t1n"], written["folder"] / "c-t1n.nii")
    _assert_names(_error(find_case_files, written["folder"]), written["folder"], "two files for t1n")


def test_folder_without_brats_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    _assert_names(_error(find_case_files, tmp_path), tmp_path, "no BraTS image files")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd"])
def test_wrong_magic(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    payload = b"this is not an image at all\n" * 40
    path.write_bytes(gzip.compress(payload) if suffix == ".nii.gz" else payload)
    _assert_names(_error(read_volume, path), path, "not a readable")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd"])
def test_truncated_file(tmp_path, rng, suffix):
    path = tmp_path / f"x{suffix}"
    array = smooth_image((20, 20, 20), rng)
    (write_nrrd if suffix == ".nrrd" else write_nifti)(path, array, affine())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _assert_names(_error(read_volume, path), path, "truncated or corrupt")


def test_missing_and_unsupported_files(tmp_path):
    _assert_names(_error(read_volume, tmp_path / "none.nii.gz"), tmp_path / "none.nii.gz", "file not found")
    other = tmp_path / "x.mha"
    other.write_bytes(b"ObjectType = Image\n")
    _assert_names(_error(read_volume, other), other, "unsupported file type")
    _assert_names(_error(read_volume, tmp_path), tmp_path, "not a file")


def test_nrrd_detached_data_outside_its_folder_is_refused(tmp_path, rng):
    secret = tmp_path / "secret.raw"
    secret.write_bytes(np.ones(8 * 8 * 8, np.float32).tobytes())
    header = tmp_path / "sub" / "evil.nhdr"
    header.parent.mkdir()
    header.write_text(
        "NRRD0004\ntype: float\ndimension: 3\nsizes: 8 8 8\nspace: left-posterior-superior\n"
        "space directions: (1,0,0) (0,1,0) (0,0,1)\nencoding: raw\nendian: little\ndata file: ../secret.raw\n"
    )
    _assert_names(_error(read_volume, header), header, "outside the header's folder")
    header.write_text(header.read_text().replace("../secret.raw", str(secret)))
    _assert_names(_error(read_volume, header), header, "outside the header's folder")


def test_nrrd_non_anatomical_space_is_refused(tmp_path, rng):
    path = tmp_path / "x.nrrd"
    write_nrrd(path, smooth_image((6, 6, 6), rng), affine())
    text = path.read_bytes().replace(b"space: left-posterior-superior", b"space: scanner-xyz")
    path.write_bytes(text)
    _assert_names(_error(read_volume, path), path, "scanner-xyz", "not an anatomical")


def test_mismatched_grids_that_do_not_overlap(tmp_path, rng):
    written = write_case(tmp_path, "c", rng)
    far = affine(origin=(500.0, 0.0, 0.0))
    write_nifti(written["paths"]["t2w"], written["arrays"]["t2w"], far)
    _assert_names(_error(read_case, written["folder"]), written["paths"]["t2w"], "does not overlap")


def test_nan_and_inf_voxels(tmp_path, rng):
    array = smooth_image((8, 8, 8), rng)
    array[1, 2, 3] = np.nan
    array[4, 4, 4] = np.inf
    path = write_nifti(tmp_path / "nan.nii.gz", array, affine())
    _assert_names(_error(read_volume, path), path, "2 voxel(s) are NaN or Inf")


def test_2d_and_4d_images(tmp_path, rng):
    flat = write_nifti(tmp_path / "flat.nii.gz", rng.random((8, 8), np.float32) + 1, affine())
    _assert_names(_error(read_volume, flat), flat, "2D", "3D volume is expected")
    slab = write_nifti(tmp_path / "slab.nii.gz", smooth_image((8, 8, 1), rng), affine())
    _assert_names(_error(read_volume, slab), slab, "single slice")
    series = write_nifti(tmp_path / "series.nii.gz", rng.random((8, 8, 8, 3), np.float32) + 1, affine())
    _assert_names(_error(read_volume, series), series, "4D", "split 4D series")
    nrrd_series = tmp_path / "series.nrrd"
    pynrrd.write(str(nrrd_series), rng.random((2, 8, 8, 8), np.float32) + 1, index_order="F")
    _assert_names(_error(read_volume, nrrd_series), nrrd_series, "4D")


def test_labels_outside_the_brats_set(tmp_path, rng):
    written = write_case(tmp_path, "c", rng)
    labels = written["labels"].copy()
    labels[0, 0, 0] = 5
    write_nifti(written["paths"]["seg"], labels, affine())
    _assert_names(_error(read_case, written["folder"]), written["paths"]["seg"], "values [5]", "BraTS")


def test_fractional_and_mixed_convention_labels(tmp_path, rng):
    written = write_case(tmp_path, "c", rng)
    write_nifti(written["paths"]["seg"], written["labels"].astype(np.float32) * 0.5, affine())
    _assert_names(_error(read_case, written["folder"]), written["paths"]["seg"], "non-integer")
    old = write_case(tmp_path, "o", rng, scheme="brats2021")
    mixed = old["arrays"]["seg"].copy()
    mixed[0, 0, 0] = 3
    write_nifti(old["paths"]["seg"], mixed, affine())
    _assert_names(_error(read_case, old["folder"]), old["paths"]["seg"], "both 4 and 3")


def test_all_zero_image(tmp_path):
    path = write_nifti(tmp_path / "zero.nii.gz", np.zeros((8, 8, 8), np.float32), affine())
    _assert_names(_error(read_volume, path), path, "every voxel is zero")
    # an empty label map is fine (healthy case)
    assert not read_volume(path, kind="label").array.any()


@pytest.mark.parametrize("spacing", [(1000.0, 1.0, 1.0), (1e-4, 1.0, 1.0)])
def test_absurd_spacing(tmp_path, rng, spacing):
    path = write_nifti(tmp_path / "sp.nii.gz", smooth_image((8, 8, 8), rng), affine(spacing))
    _assert_names(_error(read_volume, path), path, "voxel spacing", "fix the header")


def test_singular_and_non_finite_affines(tmp_path, rng):
    array = smooth_image((8, 8, 8), rng)
    singular = affine()
    singular[:3, 2] = singular[:3, 0]
    path = write_nifti(tmp_path / "sing.nii", array, singular)
    _assert_names(_error(read_volume, path), path, "singular")
    nrrd_path = tmp_path / "nan.nrrd"
    pynrrd.write(str(nrrd_path), array, {"space": "RAS", "space directions": np.eye(3), "space origin": [np.nan, 0, 0]})
    _assert_names(_error(read_volume, nrrd_path), nrrd_path, "NaN/Inf")


def test_complex_voxels(tmp_path, rng):
    array = smooth_image((6, 6, 6), rng).astype(np.complex64)
    path = write_nifti(tmp_path / "c.nii", array, affine())
    _assert_names(_error(read_volume, path), path, "not a real scalar")


def _peak_allocation(call) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as info:
            call()
        return tracemalloc.get_traced_memory()[1], str(info.value)
    finally:
        tracemalloc.stop()


def test_huge_declared_nifti_is_refused_without_allocating(tmp_path, rng):
    path = write_nifti(tmp_path / "huge.nii", smooth_image((4, 4, 4), rng), affine())
    data = bytearray(path.read_bytes())
    struct.pack_into("<hhh", data, 42, 30000, 30000, 30000)
    path.write_bytes(bytes(data))
    assert nib.load(str(path)).shape == (30000, 30000, 30000)
    peak, message = _peak_allocation(lambda: read_volume(path))
    _assert_names(message, path, "header declares", "voxels")
    assert peak < 50e6


def test_huge_declared_nrrd_is_refused_without_allocating(tmp_path):
    path = tmp_path / "huge.nrrd"
    path.write_bytes(
        b"NRRD0004\ntype: float\ndimension: 3\nsizes: 100000 100000 100000\nencoding: raw\nendian: little\n\n"
        + b"\0" * 64
    )
    peak, message = _peak_allocation(lambda: read_volume(path))
    _assert_names(message, path, "header declares")
    assert peak < 50e6


def test_label_grid_that_does_not_overlap(tmp_path, rng):
    written = write_case(tmp_path, "c", rng)
    write_nifti(written["paths"]["seg"], tumour_labels((16, 18, 14)), affine(origin=(0, 900, 0)))
    _assert_names(_error(read_case, written["folder"]), written["paths"]["seg"], "does not overlap")


def test_cli_prints_one_line_and_exits_non_zero(tmp_path, rng):
    written = write_case(tmp_path, "c", rng)
    written["paths"]["t1c"].write_bytes(b"garbage")
    result = subprocess.run(
        [sys.executable, "-m", "MedSegLensLib", "check", "--case", str(written["folder"])],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(written["paths"]["t1c"]) in lines[0] and "Traceback" not in result.stderr
