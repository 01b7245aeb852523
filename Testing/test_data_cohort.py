"""Cohorts: discovery, manifests (CSV and JSON) and the path-traversal guard."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import subprocess_env
from datafiles import write_case

from MedSegLensLib.data import MODALITIES, discover_cohort, discover_cohorts, read_manifest, write_manifest
from MedSegLensLib.errors import InputError, OutputError


@pytest.fixture
def cohort(tmp_path, rng):
    root = tmp_path / "cohort"
    written = {cid: write_case(root, cid, rng, shape=(10, 11, 12)) for cid in ("A-001", "Ünï-脑", "B-002")}
    return root, written


def test_discovery_without_manifest(cohort):
    root, written = cohort
    cases = discover_cohort(root, population="adult")
    assert [c.case_id for c in cases] == sorted(written)
    assert {c.population for c in cases} == {"adult"}
    assert all(c.seg and c.scheme == "brats2023" for c in cases)


@pytest.mark.parametrize("name", ["manifest.csv", "manifest.json"])
def test_manifest_round_trip(cohort, name):
    root, written = cohort
    cases = discover_cohort(root)
    for case, population in zip(cases, ["adult", "ssa", "pediatric"]):
        case.population = population
    path = write_manifest(root, cases, name=name)
    text = path.read_text(encoding="utf-8")
    assert "Ünï-脑" in text and str(root) not in text  # relative paths, unicode kept
    again = discover_cohort(root)
    assert [(c.case_id, c.population, c.modalities, c.seg, c.tissue) for c in again] == [
        (c.case_id, c.population, c.modalities, c.seg, c.tissue) for c in cases
    ]
    loaded = again[1].load()
    np.testing.assert_array_equal(loaded.label, written[again[1].case_id]["labels"])


def test_moved_cohort_still_loads(cohort, tmp_path):
    root, _ = cohort
    write_manifest(root, discover_cohort(root))
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    assert discover_cohort(moved)[0].load().image.shape == (4, 10, 11, 12)


def _manifest_row(case_id="x", **files):
    row = {"case_id": case_id, "population": "adult"}
    row.update({m: f"{case_id}/{case_id}-{m}.nii.gz" for m in MODALITIES})
    row.update(files)
    return row


@pytest.mark.parametrize("evil", ["../outside.nii.gz", "/etc/passwd", "a/../../b.nii.gz", "..\\..\\win.nii.gz"])
def test_manifest_path_traversal_is_refused(tmp_path, evil):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps([_manifest_row(t1c=evil)]))
    with pytest.raises(InputError) as info:
        read_manifest(manifest)
    assert str(manifest) in str(info.value) and "outside the cohort folder" in str(info.value)


@pytest.mark.parametrize("case_id", ["../up", ".hidden", "a/b", "tab\there", ""])
def test_manifest_bad_case_ids(tmp_path, case_id):
    manifest = tmp_path / "manifest.json"
    row = _manifest_row("ok")
    row["case_id"] = case_id
    manifest.write_text(json.dumps([row]))
    with pytest.raises(InputError) as info:
        read_manifest(manifest)
    assert str(manifest) in str(info.value)


@pytest.mark.parametrize(
    "content, problem",
    [
        ("[1, 2]", "not a record"),
        ("{not json", "not valid JSON"),
        ("[]", "lists no cases"),
        ('{"rows": []}', "lists no cases"),
        (json.dumps([{"case_id": "x", "t1n": "a.nii.gz"}]), "lacks t1c, t2w, t2f"),
    ],
)
def test_malformed_json_manifests(tmp_path, content, problem):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(content)
    with pytest.raises(InputError, match=problem):
        read_manifest(manifest)


def test_csv_manifest_with_excel_bom_and_2021_labels(tmp_path, rng):
    written = write_case(tmp_path, "Old_1", rng, scheme="brats2021")
    names = {role: path.relative_to(tmp_path).as_posix() for role, path in written["paths"].items()}
    header = "case_id,population," + ",".join(MODALITIES) + ",seg\n"
    line = "Old_1,adult," + ",".join(names[m] for m in MODALITIES) + f",{names['seg']}\n"
    (tmp_path / "manifest.csv").write_bytes(b"\xef\xbb\xbf" + (header + line).encode())
    (case,) = discover_cohort(tmp_path)
    assert case.scheme == "brats2021"
    np.testing.assert_array_equal(case.load().label, written["labels"])


def test_non_utf8_manifest(tmp_path):
    (tmp_path / "manifest.csv").write_bytes("case_id\nJos\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8"):
        discover_cohort(tmp_path)


def test_manifest_cannot_list_files_outside_its_folder(cohort, tmp_path, rng):
    root, _ = cohort
    stray = write_case(tmp_path / "stray", "S", rng)
    cases = discover_cohort(root) + discover_cohort(stray["folder"].parent)
    with pytest.raises(OutputError, match="outside the cohort folder"):
        write_manifest(root, cases)
    assert not (root / "manifest.csv").exists()


def test_duplicate_ids_across_cohorts(cohort, tmp_path, rng):
    root, _ = cohort
    other = tmp_path / "other"
    write_case(other, "A-001", rng)
    with pytest.raises(InputError, match="'A-001' appears more than once"):
        discover_cohorts([root, other])


def test_broken_case_folder_is_reported_not_skipped(cohort):
    root, written = cohort
    written["B-002"]["paths"]["t1c"].unlink()
    with pytest.raises(InputError, match="B-002.*missing modality t1c"):
        discover_cohort(root)


def test_single_case_folder_is_a_cohort_of_one(cohort):
    root, _ = cohort
    (case,) = discover_cohort(root / "A-001")
    assert case.case_id == "A-001"


def test_cli_cases_check_and_write_manifest(cohort):
    root, _ = cohort
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "MedSegLensLib", "cases", *map(str, a)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    listed = run(root, "--check", "--write-manifest")
    assert listed.returncode == 0, listed.stderr
    assert "Ünï-脑\tunknown\tlabelled\t10x11x12" in listed.stdout and "3 case(s)" in listed.stdout
    assert (root / "manifest.csv").is_file()
    again = run(root, "--write-manifest")
    assert again.returncode == 2 and "already exists" in again.stderr
