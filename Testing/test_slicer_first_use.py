"""A radiologist's first use of the module, click by click, on slicer-core plus the strict stand-in of Slicer's GUI.

Open the module -> Load Case (a BraTS folder) -> pick the model and SAE -> Apply -> the latent table fills -> click
a latent (its overlay over the background MRI) -> move a steering slider (preview) -> Accept (a new node, the model's
untouched) -> Export .seg.nrrd -> close the scene (the panel resets). The scene is checked after every step. Only
Qt is faked (`fake_slicer_gui`, binding by Slicer v5.10.0's parameterNodeWrapper rules); the scene, the module's
logic and the worker process are real. Installing requirements on first use is checked at the end with fakes for
PyTorch Utils and pip.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from slicer_support import assets_fixture

scene_api = pytest.importorskip("MedSegLensLib.scene")  # slicer-core
slicerio = pytest.importorskip("slicerio")

from fake_slicer_gui import open_widget, run_timer_until_idle  # noqa: E402

from MedSegLensLib.data.volumes import read_volume_metadata  # noqa: E402
from MedSegLensLib.segmentation_file import PROVENANCE_FIELD  # noqa: E402
from MedSegLensLib.slicer_module import requirements  # noqa: E402
from MedSegLensLib.worker import requirements as worker_requirements  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.scene]
assets = assets_fixture("slicer-gui")  # read only: shared with test_slicer_widget
SCT_TYPES = {"NCR": "6574001", "ED": "79654002", "ET": "86049000"}


@pytest.fixture
def widget(monkeypatch):
    instance = open_widget(monkeypatch)
    yield instance
    instance.cleanup()


def count(scene, class_name: str) -> int:
    return scene.GetNumberOfNodesByClass(class_name)


def layers(scene) -> set[tuple]:
    """(background, foreground) volume IDs of every slice view."""
    composites = [
        scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        for i in range(count(scene, "vtkMRMLSliceCompositeNode"))
    ]
    return {(c.GetBackgroundVolumeID(), c.GetForegroundVolumeID()) for c in composites}


def assert_coded_segments(node) -> None:
    segmentation = node.GetSegmentation()
    segments = [
        segmentation.GetSegment(segmentation.GetNthSegmentID(i)) for i in range(segmentation.GetNumberOfSegments())
    ]
    assert {s.GetName(): s.GetTerminology().split("~")[2].split("^")[1] for s in segments} == SCT_TYPES


def test_first_use_load_apply_overlay_steer_accept_export_close(widget, assets, tmp_path):
    ui, scene, state = widget.ui, widget.scene, widget._parameterNode
    assert count(scene, "vtkMRMLScalarVolumeNode") == 0 and layers(scene) == {(None, None)}

    # Load Case: four volumes and the reference segmentation; the T1c behind every view, views fitted.
    ui.caseFolderButton.directory = str(assets.case)
    ui.loadCaseButton.emit("clicked(bool)", False)
    assert not widget.dialogs.errors and count(scene, "vtkMRMLScalarVolumeNode") == 4
    assert ui.t1cSelector.currentNode.GetID() == state.t1c.GetID() and state.t1c.GetName().endswith("t1c")
    assert layers(scene) == {(state.t1c.GetID(), None)} and widget.dialogs.views.fits == 1
    assert count(scene, "vtkMRMLSegmentationNode") == 1
    assert_coded_segments(state.referenceSegmentation)

    # Pick the folders in the path widgets (the connector reads them into the parameter node) and Apply.
    ui.modelFolderPathLineEdit.user_sets(Path(assets.model))
    ui.saeFolderPathLineEdit.user_sets(Path(assets.sae))
    assert (state.modelFolder, state.saeFolder) == (Path(assets.model), Path(assets.sae))
    ui.applyButton.emit("clicked(bool)", False)
    assert ui.applyButton.text == "Cancel"
    run_timer_until_idle(widget)
    assert not widget.dialogs.errors and ui.applyButton.text == "Apply"
    assert count(scene, "vtkMRMLSegmentationNode") == 2
    model_node = widget.outputNode
    assert ui.outputSegmentationLabel.text == model_node.GetName() and ui.exportButton.enabled
    assert_coded_segments(model_node)
    assert scene_api.read_provenance(model_node).mode == "none"
    rows = ui.latentTable.row_texts()
    assert len(rows) == len(widget.analysis.table.rows) > 1

    # Click the edema latent's row: its map as the foreground over the T1c.
    row = [int(r[0]) for r in rows].index(assets.edema_latent)
    ui.latentTable.emit("cellClicked(int,int)", row, 0)
    run_timer_until_idle(widget)
    overlay = widget.analysis.overlay.node
    assert scene_api.overlay_latent(overlay) == assets.edema_latent
    assert layers(scene) == {(state.t1c.GetID(), overlay.GetID())}

    # Steer it: add it to the panel, move its slider; the preview node follows, with Dice against the reference.
    ui.addSteeringLatentButton.emit("clicked(bool)", False)
    widget.steeringSliders[assets.edema_latent].value = 3.0
    run_timer_until_idle(widget)
    assert count(scene, "vtkMRMLSegmentationNode") == 3  # reference, model, preview
    assert ui.steeringDiceValueLabel.text.startswith("WT ") and ui.acceptButton.enabled
    grid = scene_api.node_grid(state.t1n)
    before = scene_api.segmentation_to_labels(model_node, grid)

    # Accept: a new node with provenance; the model's segmentation is untouched.
    ui.acceptButton.emit("clicked(bool)", False)
    accepted = widget.outputNode
    assert count(scene, "vtkMRMLSegmentationNode") == 4 and accepted.GetID() != model_node.GetID()
    assert_coded_segments(accepted)
    provenance = scene_api.read_provenance(accepted)
    assert (provenance.latents, provenance.strengths, provenance.source_segmentation) == (
        [assets.edema_latent],
        [3.0],
        model_node.GetName(),
    )
    np.testing.assert_array_equal(scene_api.segmentation_to_labels(model_node, grid), before)
    steered = scene_api.segmentation_to_labels(accepted, grid)
    assert provenance.extra["changed_voxels"] == np.count_nonzero(steered != before) > 0

    # Export: a Slicer segmentation file with the coded segments, the input's grid and the provenance.
    ui.exportPathLineEdit.currentPath = str(tmp_path / "corrected.seg.nrrd")
    ui.exportButton.emit("clicked(bool)", False)
    assert not widget.dialogs.errors
    exported = slicerio.read_segmentation(str(tmp_path / "corrected.seg.nrrd"))
    assert {s["name"]: s["terminology"]["type"][1] for s in exported["segments"]} == SCT_TYPES
    np.testing.assert_array_equal(exported["voxels"], steered)
    stored = scene_api.Provenance.from_json(read_volume_metadata(tmp_path / "corrected.seg.nrrd")[PROVENANCE_FIELD])
    assert stored.strengths == [3.0] and stored.latents == [assets.edema_latent]

    # Close the scene: the panel forgets the case, so nothing points at a deleted node.
    scene.Clear(0)
    assert widget.outputNode is None and not ui.exportButton.enabled
    assert ui.latentTable.rowCount == 0 and widget.steeringSliders == {}
    assert ui.outputSegmentationLabel.text == "(none yet)"
    assert widget.analysis is None and not ui.steeringCollapsibleButton.enabled
    assert widget._parameterNode is not None and widget._parameterNode.t1n is None


@pytest.fixture
def installs(monkeypatch, widget):
    """A Slicer without torch and nibabel: a PyTorch Utils stand-in; pip is the stand-in's recorder."""
    torch_installs = []

    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation=False):  # noqa: N802, N803 - the extension's names
            torch_installs.append((askConfirmation, list(widget.dialogs.pip_installs)))
            return types.ModuleType("torch")

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
    monkeypatch.setattr(requirements, "torch_available", lambda: bool(torch_installs))
    monkeypatch.setattr(
        worker_requirements, "missing_requirements", lambda _: [] if widget.dialogs.pip_installs else ["nibabel>=5.2"]
    )
    return torch_installs


def test_first_use_installs_torch_through_pytorch_utils_then_the_rest_after_asking(widget, assets, installs):
    widget.dialogs.confirm = True
    ui = widget.ui
    ui.caseFolderButton.directory = str(assets.case)
    ui.loadCaseButton.emit("clicked(bool)", False)
    assert installs == [(True, [])]  # asked to confirm, and before anything went through pip
    assert widget.dialogs.pip_installs == ["nibabel>=5.2"] and "nibabel>=5.2" in widget.dialogs.questions[0]
    assert ui.logTextEdit.lines[:2] == ["Installing nibabel>=5.2 (1 of 1)...", "Installed."]
    assert count(widget.scene, "vtkMRMLScalarVolumeNode") == 4  # then the case loads


def test_declining_the_install_leaves_the_scene_as_it_was(widget, assets, installs):
    widget.dialogs.confirm = False
    widget.ui.caseFolderButton.directory = str(assets.case)
    widget.ui.loadCaseButton.emit("clicked(bool)", False)
    assert installs == [(True, [])] and widget.dialogs.pip_installs == []
    assert count(widget.scene, "vtkMRMLScalarVolumeNode") == 0 and not widget.dialogs.errors
