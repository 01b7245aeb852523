"""The viewer's workspace: index parsing, discovery, containment of every path, accepted files never overwritten."""

from __future__ import annotations

import json
import os
import shutil
import threading

import pytest
from viewer_support import CASES, write_fixture_workspace

from MedSegLensLib.errors import InputError, OutputError, ParameterError
from MedSegLensLib.viewer.accepted import accept_segmentation, timestamped_stem
from MedSegLensLib.viewer.workspace import INDEX_NAME, check_name, read_workspace


@pytest.fixture
def workspace(tmp_path):
    return write_fixture_workspace(tmp_path / "ws")


def _edit_index(root, change):
    path = root / INDEX_NAME
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_index_round_trip_keeps_cases_dice_failures_and_overlays(workspace):
    read = read_workspace(workspace.root)
    assert [c.case_id for c in read.cases] == [c.case_id for c in CASES]
    assert read.case(CASES[1].case_id).failure is True
    assert read.case(CASES[0].case_id).dice == CASES[0].dice
    assert read.case(CASES[0].case_id).overlay("latent-7").latent == 7
    assert read.default_model == "models/unet"
    model, sae = read.analysis()
    assert (model.name, model.folder, sae.name, sae.folder) == ("unet", "models/unet", "unet-dec1", "saes/unet-dec1")
    assert sae.interpretation == "saes/unet-dec1/latents.json" and sae.populations is None
    files = read.case_files(read.case(CASES[0].case_id))
    assert set(files.modalities) == {"t1n", "t1c", "t2w", "t2f"} and files.seg


def test_without_index_cases_are_discovered_under_cohorts(workspace):
    (workspace.root / INDEX_NAME).unlink()
    read = read_workspace(workspace.root)
    assert {(c.case_id, c.population) for c in read.cases} == {(c.case_id, c.population) for c in CASES}
    assert all(not c.failure and not c.dice and not c.overlays for c in read.cases)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["cases"][0].update(folder="../outside"), "outside the workspace"),
        (lambda d: d["cases"][0].update(folder="/etc"), "relative"),
        (lambda d: d["cases"][0].update(prediction="../../etc/passwd"), "outside the workspace"),
        (lambda d: d["cases"][0]["overlays"][0].update(file="latents/../../x.nii.gz"), "outside the workspace"),
        (lambda d: d["cases"][0].update(case_id="../evil"), "not a safe name"),
        (lambda d: d["cases"][0].update(case_id="a/b"), "not a safe name"),
        (lambda d: d["cases"][0].update(dice={"WT": 1.7}), "Dice for WT"),
        (lambda d: d["cases"][0].update(dice={"WT": float("nan")}), "Dice for WT"),
        (lambda d: d["cases"][0]["overlays"][0].update(latent=-3), "latent index"),
        (lambda d: d["cases"].append(dict(d["cases"][0])), "appears twice"),
        (lambda d: d.update(format="something-else"), "not a MedSegLens workspace"),
        (lambda d: d.update(version=99), "version"),
        (lambda d: d["cases"][0].pop("folder"), "lacks folder"),
        (lambda d: d["models"][0].update(folder="../models"), "outside the workspace"),
        (lambda d: d["models"][0]["saes"][0].update(interpretation="/tmp/latents.json"), "relative"),
        (lambda d: d["models"][0]["saes"][0].update(populations="../p.json"), "outside the workspace"),
        (lambda d: d["models"][0]["saes"][0].update(name="unet"), "used twice"),
        (lambda d: d["models"][0].update(name="a/b"), "not a safe name"),
        (lambda d: d["models"][0].pop("folder"), 'needs a "folder"'),
        (lambda d: d.update(models={"unet": "models/unet"}), "must be a list"),
        (lambda d: d["cases"][0]["overlays"][0].update(sae="no-such-sae"), "no model lists"),
    ],
)
def test_bad_index_entries_give_one_line_errors(workspace, change, message):
    _edit_index(workspace.root, change)
    with pytest.raises(InputError, match=message) as info:
        read_workspace(workspace.root)
    assert "\n" not in str(info.value)


def test_the_analysis_pair_follows_the_default_sae_and_an_index_without_models_has_none(workspace):
    def two_saes(data):
        data["models"][0]["saes"].append({"name": "unet-enc", "folder": "saes/unet-enc"})
        data["default_sae"] = "saes/unet-enc/"

    _edit_index(workspace.root, two_saes)
    model, sae = read_workspace(workspace.root).analysis()
    assert (model.name, sae.name, sae.interpretation) == ("unet", "unet-enc", None)
    _edit_index(workspace.root, lambda data: data.pop("models"))
    assert read_workspace(workspace.root).analysis() is None


def test_a_symlink_out_of_the_workspace_is_refused(workspace, tmp_path):
    outside = tmp_path / "elsewhere"
    folder = workspace.root / workspace.cases[0].folder
    shutil.copytree(folder, outside)
    shutil.rmtree(folder)
    os.symlink(outside, folder)
    with pytest.raises(InputError, match="outside the workspace"):
        read_workspace(workspace.root)


def test_a_case_file_linked_out_of_the_workspace_is_refused(workspace, tmp_path):
    read = read_workspace(workspace.root)
    case = read.cases[0]
    target = read.case_files(case).modalities["t2w"]
    moved = tmp_path / "t2w.nii.gz"
    shutil.move(target, moved)
    os.symlink(moved, target)
    with pytest.raises(InputError, match="outside the workspace"):
        read.case_files(case)


def test_unknown_case_and_overlay_are_parameter_errors(workspace):
    with pytest.raises(ParameterError, match="no case named"):
        workspace.case("../../etc")
    with pytest.raises(ParameterError, match="no overlay named"):
        workspace.cases[0].overlay("latent-999")


def test_bad_json_and_missing_folder(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_workspace(tmp_path / "missing")
    (tmp_path / INDEX_NAME).write_text("{ nope")
    with pytest.raises(InputError, match="not valid JSON"):
        read_workspace(tmp_path)
    (tmp_path / INDEX_NAME).unlink()
    with pytest.raises(InputError, match="not a MedSegLens workspace"):
        read_workspace(tmp_path)


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b", "a\\b", "", "x" * 200, "ü-case", "a..b"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(ParameterError):
        check_name(name, "name")


def _writer(payload: bytes):
    def write(path):
        path.write_bytes(payload)

    return write


def test_accepting_twice_writes_two_files_and_never_overwrites(workspace):
    case_id = workspace.cases[0].case_id
    first = accept_segmentation(workspace, case_id, "prediction-x", _writer(b"first"), {"source": "prediction"})
    second = accept_segmentation(workspace, case_id, "prediction-x", _writer(b"second"), {"source": "prediction"})
    assert first.segmentation.name == "prediction-x.seg.nrrd"
    assert second.segmentation.name == "prediction-x-2.seg.nrrd"
    assert first.segmentation.read_bytes() == b"first" and second.segmentation.read_bytes() == b"second"
    record = json.loads(second.provenance.read_text())
    assert record["segmentation_file"] == "prediction-x-2.seg.nrrd" and record["case_id"] == case_id
    assert len(record["segmentation_sha256"]) == 64
    leftovers = [p.name for p in first.segmentation.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_concurrent_accepts_get_distinct_names(workspace):
    case_id = workspace.cases[0].case_id
    results = []

    def accept(index):
        results.append(accept_segmentation(workspace, case_id, "race", _writer(str(index).encode()), {}))

    threads = [threading.Thread(target=accept, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = {r.segmentation.name for r in results}
    assert len(names) == 8
    assert sorted(r.segmentation.read_bytes() for r in results) == sorted(str(i).encode() for i in range(8))


def test_a_failed_write_leaves_nothing(workspace):
    case_id = workspace.cases[0].case_id

    def broken(path):
        raise OutputError(f"{path}: disk full")

    with pytest.raises(OutputError):
        accept_segmentation(workspace, case_id, "broken", broken, {})
    with pytest.raises(OutputError, match="could not be written"):
        accept_segmentation(workspace, case_id, "empty", _writer(b""), {})
    assert list(workspace.accepted_dir(case_id).iterdir()) == []


def test_accept_refuses_unsafe_case_and_names(workspace):
    with pytest.raises(ParameterError):
        accept_segmentation(workspace, "../x", "ok", _writer(b"x"), {})
    with pytest.raises(ParameterError):
        accept_segmentation(workspace, workspace.cases[0].case_id, "../../escape", _writer(b"x"), {})
    assert not (workspace.root.parent / "escape.seg.nrrd").exists()


def test_an_unwritable_accepted_folder_is_a_one_line_output_error(workspace):
    # A file where the case's accepted/ folder should be: unwritable even for root.
    blocker = workspace.accepted_dir(workspace.cases[0].case_id)
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write") as info:
        accept_segmentation(workspace, workspace.cases[0].case_id, "blocked", _writer(b"x"), {})
    assert "\n" not in str(info.value)
    assert blocker.read_text() == "not a folder"


def test_timestamped_stem_is_a_safe_name():
    assert check_name(timestamped_stem("prediction"), "name").startswith("prediction-")
