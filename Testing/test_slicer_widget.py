"""The Slicer widget driven through FakeSlicerGui (only Qt is faked): Apply with an SAE, browse, overlay, steer, accept.

Everything below the widget is real: the slicer-core scene, the module's logic,
the worker subprocess with the tiny model and SAE.
"""

from __future__ import annotations

import numpy as np
import pytest
from slicer_support import EDEMA, assets_fixture

scene_api = pytest.importorskip("MedSegLensLib.scene")  # needs slicer-core

from fake_slicer_gui import open_widget, run_timer_until_idle  # noqa: E402

from MedSegLensLib.latent_focus import HEAT_COLORMAP, latent_focus, legend_text  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.scene]
assets = assets_fixture("slicer-gui")  # read only: shared with test_slicer_first_use


@pytest.fixture
def widget(monkeypatch):
    instance = open_widget(monkeypatch)
    yield instance
    instance.cleanup()


def latent_column(table):
    return [int(row[0]) for row in table.row_texts()]


def test_apply_browse_overlay_steer_accept_and_export(widget, assets, tmp_path):
    ui, state = widget.ui, widget._parameterNode
    ui.caseFolderButton.directory = str(assets.case)
    widget.onLoadCaseFolder()
    state.modelFolder, state.saeFolder = assets.model, assets.sae
    widget.onApplyButton()
    assert ui.applyButton.text == "Cancel"
    run_timer_until_idle(widget)
    assert not widget.dialogs.errors and ui.applyButton.text == "Apply"
    segmentation = widget.scene.GetFirstNodeByName("planted-t1n segmentation")
    assert segmentation.IsA("vtkMRMLSegmentationNode") and ui.steeringCollapsibleButton.enabled

    # The latent table: strongest first; a header click sorts; the filter narrows.
    table = widget.analysis.table
    shown = latent_column(ui.latentTable)
    assert shown == [row.latent for row in table.view()] and len(shown) == len(table.rows) > 1
    ui.latentTable.horizontalHeader().emit("sectionClicked(int)", 0)
    assert latent_column(ui.latentTable) == sorted(shown)
    ui.latentFilterLineEdit.emit("textChanged(QString)", str(assets.edema_latent))
    assert latent_column(ui.latentTable) == [assets.edema_latent]

    # A click on a row overlays that latent by the viewer's rule (MedSegLensLib.latent_focus): heat colour map over
    # p50..p99 of its activations here, threshold slider in activation units from 0 to the peak, starting at p50.
    ui.latentTable.emit("cellClicked(int,int)", 0, 1)
    run_timer_until_idle(widget)
    overlay = widget.analysis.overlay.node
    assert scene_api.overlay_latent(overlay) == assets.edema_latent
    values, _ = scene_api.node_array(overlay)
    rule = latent_focus(values)
    display, slider = overlay.GetDisplayNode(), ui.latentThresholdSlider
    assert display.GetColorNodeID() == HEAT_COLORMAP
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx(rule.window(), rel=1e-4)
    assert (slider.minimum, slider.maximum) == pytest.approx((0.0, float(values.max())), rel=1e-5)
    assert slider.value == pytest.approx(rule.low, rel=1e-4) and 0 < rule.low < rule.high < float(values.max())
    assert display.GetLowerThreshold() == pytest.approx(rule.low, rel=1e-4)
    ras = [round(v, 1) for v in rule.focus_ras(scene_api.node_grid(overlay).affine)]
    assert ui.latentLegendLabel.text == legend_text({**rule.legend(), "latent": assets.edema_latent, "focus_ras": ras})
    assert ui.latentLegendLabel.text.startswith(f"latent {assets.edema_latent} · {rule.low:.3g}–")
    # The user moves the threshold (activation units): transparent below it, the colour range stays.
    slider.value = 0.5 * float(values.max())
    slider.emit("valueChanged(double)", slider.value)
    assert display.GetLowerThreshold() == pytest.approx(0.5 * float(values.max()), rel=1e-5)
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx(rule.window(), rel=1e-4)
    assert not widget.dialogs.errors

    # Steering: add the latent, move its slider; the preview follows; Accept makes a new node.
    ui.addSteeringLatentButton.emit("clicked(bool)", False)
    slider = widget.steeringSliders[assets.edema_latent]
    assert (slider.minimum, slider.maximum, slider.value) == (-10.0, 10.0, 0.0)
    state.steeringRegion, state.steeringMarginMm = "tumour-margin", 4.0
    widget.onParameterNodeModified()
    for value in (1.0, 2.0, 3.0):  # three quick moves: only the newest preview is shown
        slider.value = value
    run_timer_until_idle(widget)
    outcome = widget.analysis.preview.outcome
    assert outcome.spec["strengths"] == [3.0] and outcome.spec["region"]["kind"] == "tumour-margin"
    assert ui.steeringDiceValueLabel.text.startswith("WT ") and "ED " in ui.steeringDiceValueLabel.text
    assert f"ED {outcome.dice['ED']:.3f} (model {outcome.dice_unsteered['ED']:.3f})" in ui.steeringDiceValueLabel.text
    assert outcome.dice["ED"] > outcome.dice_unsteered["ED"]
    assert ui.acceptButton.enabled
    t1n = state.t1n
    before = scene_api.segmentation_to_labels(segmentation, scene_api.node_grid(t1n))
    widget.onAcceptButton()
    accepted = widget.outputNode
    assert accepted.GetID() != segmentation.GetID() and ui.outputSegmentationLabel.text == accepted.GetName()
    assert scene_api.read_provenance(accepted).strengths == [3.0]
    np.testing.assert_array_equal(scene_api.segmentation_to_labels(segmentation, scene_api.node_grid(t1n)), before)
    edema = scene_api.segmentation_to_labels(accepted, scene_api.node_grid(t1n)) == EDEMA
    assert np.count_nonzero(edema) > np.count_nonzero(before == EDEMA)

    ui.exportPathLineEdit.currentPath = str(tmp_path / "corrected.seg.nrrd")
    widget.onExportButton()
    assert (tmp_path / "corrected.seg.nrrd").is_file() and not widget.dialogs.errors
    assert ui.logTextEdit.lines[-1].startswith(f"Exported {accepted.GetName()}")


def test_steering_problems_show_in_the_panel_without_a_dialog(widget, assets):
    ui, state = widget.ui, widget._parameterNode
    ui.caseFolderButton.directory = str(assets.case)
    widget.onLoadCaseFolder()
    state.modelFolder, state.saeFolder = assets.model, assets.sae
    widget.onApplyButton()
    run_timer_until_idle(widget)
    ui.latentTable.emit("cellClicked(int,int)", 0, 0)
    ui.addSteeringLatentButton.emit("clicked(bool)", False)
    state.steeringRegion = "mask"  # but no mask segmentation picked
    widget.onParameterNodeModified()
    widget.steeringSliders[widget.selectedLatent].value = 1.0
    assert ui.steeringDiceValueLabel.text == "Error: a mask region needs a segmentation: pick one in 'Region mask'"
    assert not widget.dialogs.errors
    run_timer_until_idle(widget)
    ui.steeringLatentTable.current_row = 0
    widget.onRemoveSteeringLatent()
    assert widget.steeringSliders == {} and ui.steeringLatentTable.rowCount == 0
