"""Every reader path: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr + raw), both BraTS namings, explicit files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import subprocess_env
from datafiles import affine, smooth_image, tumour_labels, write_case, write_nifti, write_nrrd

from MedSegLensLib.data import MODALITIES, case_files_from_paths, find_case_files, read_case, read_volume
from MedSegLensLib.errors import InputError, ParameterError


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".nhdr"])
@pytest.mark.parametrize("scheme", ["brats2023", "brats2021"])
def test_case_folder_reads_every_format_and_naming(tmp_path, rng, suffix, scheme):
    written = write_case(
        tmp_path, "Case-007", rng, scheme=scheme, suffix=suffix, aff=affine((1.0, 1.2, 1.5), (5, -3, 2))
    )
    files = find_case_files(written["folder"])
    assert files.scheme == scheme
    case = files.load()
    assert case.case_id == "Case-007"
    assert case.image.dtype == np.float32 and case.image.shape == (4, 16, 18, 14)
    for index, modality in enumerate(MODALITIES):
        np.testing.assert_allclose(case.image[index], written["arrays"][modality], rtol=1e-6)
    # BraTS 2021 writes enhancing tumour as 4; the case holds 3 either way.
    np.testing.assert_array_equal(case.label, written["labels"])
    assert set(np.unique(case.label)) == {0, 1, 2, 3}
    np.testing.assert_allclose(case.grid.affine, affine((1.0, 1.2, 1.5), (5, -3, 2)), atol=1e-5)
    assert case.grid.spacing == pytest.approx((1.0, 1.2, 1.5), abs=1e-5)


def test_nhdr_reads_its_detached_raw_file(tmp_path, rng):
    array = smooth_image((8, 9, 10), rng)
    header = write_nrrd(tmp_path / "vol.nhdr", array, affine())
    assert "data file" in header.read_text()
    assert any(p.name != "vol.nhdr" for p in tmp_path.iterdir())
    np.testing.assert_array_equal(read_volume(header).array, array)


def test_explicit_files_with_any_names_and_mixed_formats(tmp_path, rng):
    shape = (12, 10, 9)
    arrays = {m: smooth_image(shape, rng, offset=100 + 10 * i) for i, m in enumerate(MODALITIES)}
    paths = {
        "t1n": write_nifti(tmp_path / "a" / "pre.nii", arrays["t1n"], affine()),
        "t1c": write_nrrd(tmp_path / "b" / "post.nrrd", arrays["t1c"], affine()),
        "t2w": write_nrrd(tmp_path / "c" / "tee2.nhdr", arrays["t2w"], affine()),
        "t2f": write_nifti(tmp_path / "d" / "flair.nii.gz", arrays["t2f"], affine()),
    }
    seg = write_nifti(tmp_path / "truth.nii.gz", tumour_labels(shape, radii=(3, 3, 3)), affine())
    files = case_files_from_paths(paths, seg=seg, case_id="pat1")
    case = files.load()
    assert case.case_id == "pat1"
    for index, modality in enumerate(MODALITIES):
        np.testing.assert_allclose(case.image[index], arrays[modality], rtol=1e-6)
    assert case.label is not None and case.label.max() == 3


def test_explicit_brats_files_get_their_case_id_and_2021_labels(tmp_path, rng):
    written = write_case(tmp_path, "BraTS2021_00042", rng, scheme="brats2021")
    paths = {m: written["paths"][m] for m in MODALITIES}
    files = case_files_from_paths(paths, seg=written["paths"]["seg"])
    assert files.case_id == "BraTS2021_00042"
    np.testing.assert_array_equal(files.load().label, written["labels"])


def test_explicit_files_need_all_four_modalities(tmp_path, rng):
    written = write_case(tmp_path, "c1", rng)
    with pytest.raises(InputError, match="missing modality t2f"):
        case_files_from_paths({m: written["paths"][m] for m in ("t1n", "t1c", "t2w")})


def test_trailing_singleton_axis_is_accepted(tmp_path, rng):
    array = smooth_image((6, 7, 8), rng)
    path = write_nifti(tmp_path / "x.nii.gz", array[..., None], affine())
    assert read_volume(path).array.shape == (6, 7, 8)


def test_unicode_case_folder(tmp_path, rng):
    written = write_case(tmp_path, "Élodie-脑-01", rng)
    case = read_case(written["folder"])
    assert case.case_id == "Élodie-脑-01"


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "MedSegLensLib", *map(str, args)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )


def test_cli_check_accepts_a_folder_or_four_files(tmp_path, rng):
    written = write_case(tmp_path, "cli-case", rng)
    by_folder = _cli("check", "--case", written["folder"])
    assert by_folder.returncode == 0, by_folder.stderr
    assert "cli-case: 16x18x14" in by_folder.stdout and "ED" in by_folder.stdout
    named = [arg for m in MODALITIES for arg in (f"--{m}", written["paths"][m])]
    by_files = _cli("check", *named, "--case-id", "named")
    assert by_files.returncode == 0, by_files.stderr
    assert by_files.stdout.startswith("named: 16x18x14")


def test_cli_case_arguments_refuse_bad_combinations(tmp_path, rng):
    written = write_case(tmp_path, "combo", rng)
    both = _cli("check", "--case", written["folder"], "--t1n", written["paths"]["t1n"])
    assert both.returncode != 0 and "not both" in both.stderr and "Traceback" not in both.stderr
    partial = _cli("check", "--t1n", written["paths"]["t1n"])
    assert partial.returncode != 0 and "--t1c --t2w --t2f" in partial.stderr
    neither = _cli("check")
    assert neither.returncode != 0 and "no case given" in neither.stderr
    file_as_case = _cli("check", "--case", written["paths"]["t1n"])
    assert file_as_case.returncode != 0 and "expects a case folder" in file_as_case.stderr
    assert len(file_as_case.stderr.strip().splitlines()) == 1


def test_case_args_helper_in_process(tmp_path, rng):
    import argparse

    from MedSegLensLib.cli.case_args import add_case_arguments, case_files_from_args

    parser = argparse.ArgumentParser()
    add_case_arguments(parser)
    written = write_case(tmp_path, "helper", rng)
    files = case_files_from_args(parser.parse_args(["--case", str(written["folder"])]))
    assert files.case_id == "helper" and files.seg.endswith("helper-seg.nii.gz")
    with pytest.raises(ParameterError):
        case_files_from_args(parser.parse_args([]))
    with pytest.raises(InputError, match="case id"):
        case_files_from_args(parser.parse_args(["--case", str(written["folder"]), "--case-id", "../x"]))


def test_tissue_map_is_read_and_checked(tmp_path, rng):
    written = write_case(tmp_path, "t", rng)
    tissue = (np.indices((16, 18, 14)).sum(axis=0) % 4).astype(np.uint8)
    tissue_path = write_nifti(written["folder"] / "t-tissue.nii.gz", tissue, affine())
    files = find_case_files(written["folder"])
    assert files.tissue == str(tissue_path)
    np.testing.assert_array_equal(files.load().tissue, tissue)
    assert files.load(with_labels=False).tissue is None
    write_nifti(tissue_path, tissue + 1, affine())
    with pytest.raises(InputError, match=r"t-tissue.nii.gz: tissue values \[4\] are outside"):
        files.load()
