"""The Triage section of the Slicer widget (FakeSlicerGui; the scene, logic and worker are real).

A worklist written by the triage package's writer; the loaded planted case is in it at rank 2 of 3 with the
edema latent among its top latents.
"""

from __future__ import annotations

import sys

import pytest
from slicer_support import assets_fixture, write_test_worklist

scene_api = pytest.importorskip("MedSegLensLib.scene")  # needs slicer-core

from fake_slicer_gui import open_widget, run_timer_until_idle  # noqa: E402

from MedSegLensLib.slicer_module.triage_view import TriageLookup  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.scene]
assets = assets_fixture("slicer-gui")  # read only: shared with test_slicer_widget and test_slicer_first_use


@pytest.fixture
def widget(monkeypatch):
    instance = open_widget(monkeypatch)
    yield instance
    instance.cleanup()


def worklist_with_planted(folder, edema_latent, sae_sha256=""):
    top = [
        {"latent": edema_latent, "excess": 0.25, "description": "edema: FLAIR-bright rim"},
        {"latent": edema_latent + 100, "excess": 0.05, "description": ""},
    ]
    cases = [
        {"case_id": "other-high", "risk": 0.9, "failure": True},
        {"case_id": "planted", "risk": 0.6, "failure": False, "top_latents": top},
        {"case_id": "other-low", "risk": 0.1},
    ]
    return write_test_worklist(folder, cases, sae_sha256)


def shown(widget):
    ui = widget.ui
    return {
        "risk": ui.triageRiskValueLabel.text,
        "rank": ui.triageRankValueLabel.text,
        "failure": ui.triageFailureValueLabel.text,
        "latents": ui.triageLatentTable.row_texts(),
        "status": ui.triageStatusLabel.text,
    }


def test_triage_section_shows_the_loaded_cases_line_or_says_why_not(widget, assets, tmp_path):
    ui, state = widget.ui, widget._parameterNode
    folder = worklist_with_planted(tmp_path / "triage", assets.edema_latent)
    # Before the first Load or Apply nothing is installed yet, so no worklist is read.
    assert shown(widget)["status"] == "Load or Apply a case to see its line in a worklist."
    ui.caseFolderButton.directory = str(assets.case)
    widget.onLoadCaseFolder()
    ui.triageFolderPathLineEdit.user_sets(folder)  # the bound path field, as a user types it
    assert state.triageFolder == folder
    assert shown(widget) == {
        "risk": "0.600",
        "rank": "2 of 3",
        "failure": "did not fail",
        "latents": [
            [str(assets.edema_latent), "0.250", "edema: FLAIR-bright rim"],
            [str(assets.edema_latent + 100), "0.050", ""],
        ],
        "status": "",
    }

    # The worklist.json itself works too; a worklist without the case says so and shows nothing else.
    write_test_worklist(tmp_path / "others", [{"case_id": "someone-else", "risk": 0.3}])
    ui.triageFolderPathLineEdit.user_sets(tmp_path / "others" / "worklist.json")
    assert shown(widget) == {
        "risk": "",
        "rank": "",
        "failure": "",
        "latents": [],
        "status": "planted is not in this worklist (1 case).",
    }

    # A corrupt worklist: one status line, no dialog, nothing else changes; fixed in place, it is read again.
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "worklist.json").write_text('{"format": "medseglens-triage-worklist", "version": 1, "cases": [')
    ui.triageFolderPathLineEdit.user_sets(corrupt)
    status = shown(widget)["status"]
    assert status.startswith(f"Worklist not read: {corrupt / 'worklist.json'}: cannot read the triage worklist")
    assert "\n" not in status and shown(widget)["latents"] == [] and not widget.dialogs.errors
    assert ui.applyButton.enabled and state.t1n is not None
    (corrupt / "worklist.json").write_text((folder / "worklist.json").read_text())
    widget.updateTriage()
    assert shown(widget)["rank"] == "2 of 3"


def test_clicking_a_top_latent_shows_its_overlay(widget, assets, tmp_path):
    ui, state = widget.ui, widget._parameterNode
    ui.caseFolderButton.directory = str(assets.case)
    widget.onLoadCaseFolder()
    ui.triageFolderPathLineEdit.user_sets(worklist_with_planted(tmp_path / "triage", assets.edema_latent))
    ui.triageLatentTable.emit("cellClicked(int,int)", 0, 2)  # before Apply: no codes to map yet
    assert shown(widget)["status"].startswith("Apply with an SAE folder first")

    state.modelFolder, state.saeFolder = assets.model, assets.sae
    widget.onApplyButton()
    run_timer_until_idle(widget)
    ui.triageLatentTable.emit("cellClicked(int,int)", 0, 2)
    run_timer_until_idle(widget)
    overlay = widget.analysis.overlay.node
    assert scene_api.overlay_latent(overlay) == assets.edema_latent and widget.selectedLatent == assets.edema_latent
    assert ui.latentLegendLabel.text.startswith(f"latent {assets.edema_latent} · ")
    assert shown(widget)["status"] == "" and not widget.dialogs.errors

    # A latent that is not active in this case: its one-line reason in the Triage section, the overlay stays.
    ui.triageLatentTable.emit("cellClicked(int,int)", 1, 0)
    assert shown(widget)["status"].startswith(f"latent {assets.edema_latent + 100} is not active in this case")
    assert scene_api.overlay_latent(widget.analysis.overlay.node) == assets.edema_latent

    # A worklist made with another SAE: its latent numbers are other features, so they are not shown.
    other = worklist_with_planted(tmp_path / "other-sae", assets.edema_latent, sae_sha256="0" * 64)
    ui.triageFolderPathLineEdit.user_sets(other)
    ui.triageLatentTable.emit("cellClicked(int,int)", 0, 0)
    assert shown(widget)["status"].startswith("This worklist was made with another SAE (000000000000")


def test_a_worklist_reader_that_cannot_be_imported_is_one_status_line(monkeypatch, tmp_path):
    """In a Slicer whose Python lacks a package the reader's import needs, the section says so and nothing raises
    (the same parameter-node callback applies the overlay and steering settings after it); no path, no import."""
    monkeypatch.setitem(sys.modules, "MedSegLensLib.triage.read", None)  # any import of it raises ImportError
    lookup = TriageLookup()
    assert lookup.summary("", "planted").status.startswith("Choose a triage output folder")
    status = lookup.summary(tmp_path, "planted").status
    assert status.startswith("Worklist not read: ") and "\n" not in status
    assert lookup.latent_problem(tmp_path, {"sha256": "abc"}).startswith("Worklist not read: ")
