"""`medseglens synth` cohorts: files, determinism, manifest, montage, atomic output, resuming, errors."""

from __future__ import annotations

import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import subprocess_env

from MedSegLensLib.data import discover_cohort, read_case, read_volume
from MedSegLensLib.errors import OutputError, ParameterError
from MedSegLensLib.processes import exclusive
from MedSegLensLib.synth import ATLAS_LABELS, ensure_cohort, generate_cohort
from MedSegLensLib.synth import cohort as cohort_module

SPACING = 6.0


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    made = {}
    for population in ("ssa", "healthy"):
        made[population] = generate_cohort(population, 2, 5, root / population, spacing=SPACING, progress=False).folder
    return made


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_another_seed_differs(cohorts, tmp_path):
    again = generate_cohort("ssa", 2, 5, tmp_path / "again", spacing=SPACING, progress=False).folder
    assert files_of(again) == files_of(cohorts["ssa"])
    other = generate_cohort("ssa", 2, 6, tmp_path / "other", spacing=SPACING, progress=False).folder
    first = read_case(next(p for p in sorted(other.iterdir()) if p.is_dir()))
    reference = read_case(next(p for p in sorted(cohorts["ssa"].iterdir()) if p.is_dir()))
    assert first.image.shape == reference.image.shape
    assert not np.array_equal(first.image, reference.image)
    assert not np.array_equal(first.label, reference.label)


def test_cases_read_back_with_valid_images_labels_tissue_and_atlas(cohorts):
    listed = discover_cohort(cohorts["ssa"])
    assert [c.population for c in listed] == ["ssa", "ssa"]
    for files in listed:
        case = files.load()
        brain = case.tissue > 0
        assert set(np.unique(case.label)) <= {0, 1, 2, 3} and {1, 2}.issubset(set(np.unique(case.label)))
        assert set(np.unique(case.tissue)) == {0, 1, 2, 3}
        assert np.all(case.label[~brain] == 0)
        for channel in case.image:  # skull-stripped: zero outside, positive scanner values inside
            assert np.all(channel[~brain] == 0) and np.all(channel[brain] >= 1) and channel.max() > 100
        assert nib.load(files.modalities["t1n"]).get_data_dtype() == np.int16
        atlas = read_volume(files.atlas, kind="label").array
        assert set(np.unique(atlas)) <= set(ATLAS_LABELS) and np.all((atlas > 0) == brain)
    table = (cohorts["ssa"] / "atlas_labels.csv").read_text().splitlines()
    assert table[0] == "label,name" and len(table) == len(ATLAS_LABELS) + 1
    assert "Louis Collins" in (cohorts["ssa"] / cohort_module.LICENCE).read_text()


def test_healthy_cases_have_an_empty_label_map(cohorts):
    for files in discover_cohort(cohorts["healthy"]):
        case = files.load()
        assert case.label is not None and not case.label.any()
        assert case.population == "healthy"


def test_montage_is_written_and_shows_images(cohorts):
    import matplotlib.image

    picture = matplotlib.image.imread(cohorts["ssa"] / "montage.png")
    assert picture.shape[0] > 150 and picture.shape[1] > 600
    assert picture[..., :3].std() > 0.1  # not a blank canvas


def test_refuses_to_overwrite_without_the_flag(cohorts, tmp_path):
    folder = generate_cohort("healthy", 1, 1, tmp_path / "c", spacing=SPACING, progress=False).folder
    with pytest.raises(OutputError) as info:
        generate_cohort("healthy", 1, 2, folder, spacing=SPACING, progress=False)
    assert "--overwrite" in str(info.value) and "\n" not in str(info.value)
    generate_cohort("healthy", 1, 2, folder, spacing=SPACING, overwrite=True, progress=False)
    assert [c.case_id for c in discover_cohort(folder)] == ["SYN-HLT-2-00000"]


def test_a_failure_midway_leaves_no_folder(tmp_path, monkeypatch):
    real = cohort_module.synthesize_case
    calls = []

    def fail_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk gone")
        return real(*args, **kwargs)

    monkeypatch.setattr(cohort_module, "synthesize_case", fail_on_second)
    with pytest.raises(RuntimeError):
        generate_cohort("adult", 3, 1, tmp_path / "partial", spacing=SPACING, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_ensure_cohort_generates_once_and_keeps_a_complete_folder(cohorts, tmp_path, monkeypatch):
    folder = tmp_path / "healthy"
    assert ensure_cohort(folder, "healthy", 2, 5, spacing=SPACING)
    assert files_of(folder) == files_of(cohorts["healthy"])  # what generate_cohort gives for these arguments
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}

    def refuse(*args, **kwargs):
        raise AssertionError("a complete cohort was generated again")

    monkeypatch.setattr(cohort_module, "generate_cohort", refuse)
    assert not ensure_cohort(folder, "healthy", 2, 5, spacing=SPACING)
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == stamps


def test_ensure_cohort_rebuilds_an_incomplete_folder_and_a_killed_runs_leftovers(cohorts, tmp_path):
    folder = tmp_path / "ssa"
    (folder / "SYN-SSA-5-00000").mkdir(parents=True)  # cases but no manifest: not a finished cohort
    (folder / "SYN-SSA-5-00000" / "SYN-SSA-5-00000-t1n.nii.gz").write_bytes(b"truncated")
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    leftover = tmp_path / f".ssa.{killed.pid}.x.partial"  # the temporary a killed generation leaves
    leftover.mkdir()
    assert ensure_cohort(folder, "ssa", 2, 5, spacing=SPACING)
    assert files_of(folder) == files_of(cohorts["ssa"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ssa"]


def test_ensure_cohort_with_a_lock_generates_once_for_concurrent_callers(cohorts, tmp_path):
    folder, start, built = tmp_path / "healthy", threading.Barrier(2), []

    def caller():
        start.wait()
        built.append(
            ensure_cohort(folder, "healthy", 2, 5, spacing=SPACING, guard=partial(exclusive, poll_seconds=0.05))
        )

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(built) == [False, True]
    assert files_of(folder) == files_of(cohorts["healthy"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["healthy"]  # the lock is gone


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"cases": 0}, "--cases"),
        ({"seed": -1}, "--seed"),
        ({"spacing": 0.3}, "spacing"),
        ({"severity": 5.0}, "severity"),
        ({"population": "elderly"}, "unknown population"),
    ],
)
def test_bad_parameters_are_refused_before_any_work(tmp_path, kwargs, text):
    arguments = {"population": "adult", "cases": 1, "seed": 0, "out": tmp_path / "x", "spacing": SPACING, **kwargs}
    with pytest.raises(ParameterError) as info:
        generate_cohort(**arguments, progress=False)
    assert text in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "x").exists()


def run_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "MedSegLensLib", "synth", *arguments],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )


def test_cli_writes_a_cohort_and_reports_one_line_errors(tmp_path):
    out = tmp_path / "cli"
    done = run_cli(
        "--population", "pediatric", "--cases", "1", "--seed", "3", "--out", str(out), "--spacing", "6", "--quiet"
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 1 pediatric case(s)" in done.stdout and (out / "SYN-PED-3-00000").is_dir()
    again = run_cli("--population", "pediatric", "--cases", "1", "--seed", "3", "--out", str(out), "--spacing", "6")
    bad = run_cli(
        "--population", "adult", "--cases", "2", "--seed", "0", "--out", str(tmp_path / "y"), "--severity", "-1"
    )
    for result, text in ((again, "already exists"), (bad, "severity")):
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("medseglens synth: error:") and text in lines[0]
