"""The module's whole flow below the widget: a real slicer-core scene, a real worker subprocess, a tiny model and SAE.

Load a case -> Apply with an SAE (segmentation node + latent browser rows) ->
overlay latents (aligned with the input in physical space) -> steering previews
(the edema latent grows the edema; Dice against the reference) -> Accept (a new
node with provenance) -> scene save and exports read back -> cancel and crash
leave the scene as it was.
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
from slicer_support import EDEMA, assets_fixture
from test_worker_logic import Recorder as JobRecorder
from test_worker_logic import scene_state

pytest.importorskip("slicer")
scene_api = pytest.importorskip("MedSegLensLib.scene")

from MedSegLensLib.data import MODALITIES, read_case  # noqa: E402
from MedSegLensLib.errors import ParameterError  # noqa: E402
from MedSegLensLib.latent_focus import HEAT_COLORMAP, latent_focus  # noqa: E402
from MedSegLensLib.models import load_model  # noqa: E402
from MedSegLensLib.sae import encode_case, load_sae  # noqa: E402
from MedSegLensLib.slicer_module.logic import ModuleLogic  # noqa: E402
from MedSegLensLib.slicer_module.steering import SteeringRequest  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.scene]
assets = assets_fixture("flow")


@pytest.fixture
def logic(worker):
    module_logic = ModuleLogic(scene_api.create_headless_slicer().scene, worker, scene_api)
    yield module_logic
    module_logic.cancel()


class Recorder(JobRecorder):
    """Records what the logic reported, including requests superseded by newer ones."""

    def __init__(self):
        super().__init__()
        self.superseded = lambda: self.events.append(("superseded",))


def analyse(logic, assets, case_dir):
    """Load the case folder and run Apply with the SAE; returns the loaded nodes and the model's node."""
    loaded = logic.load_case_folder(case_dir)
    volumes = {m: loaded[m] for m in MODALITIES}
    recorder = Recorder()
    logic.analyse(volumes, assets.model, assets.sae, recorder, reference=loaded["reference"])
    logic.wait(timeout=300)
    kind, node = recorder.last()
    assert kind == "finished", recorder.events
    return loaded, node


def labels_of(node, volume):
    return scene_api.segmentation_to_labels(node, scene_api.node_grid(volume))


def voxel_at(node, ras):
    """The node's voxel [i, j, k] containing the RAS point."""
    ijk = np.linalg.inv(scene_api.node_grid(node).affine) @ [*ras, 1.0]
    return tuple(int(v) for v in np.rint(ijk[:3]))


def test_a_case_is_analysed_and_latents_overlay_aligned_with_the_input(logic, assets):
    loaded, segmentation = analyse(logic, assets, assets.flipped)
    t1n = loaded["t1n"]
    source = nib.load(str(assets.flipped / "planted-t1n.nii.gz"))
    np.testing.assert_allclose(scene_api.node_grid(t1n).affine, source.affine)
    assert scene_api.node_grid(t1n).shape == source.shape

    model, sae = load_model(assets.model, device="cpu"), load_sae(assets.sae)
    case = read_case(assets.flipped)
    np.testing.assert_array_equal(labels_of(segmentation, t1n), case.to_source(model.predict(case).labels))
    provenance = scene_api.read_provenance(segmentation)
    assert provenance.mode == "none" and provenance.model_sha256 == model.fingerprint
    assert provenance.sae_sha256 and provenance.layer == sae.info.layer

    codes = encode_case(model, sae, case)
    table = logic.analysis.table
    assert {row.latent for row in table.rows} == set(np.flatnonzero(codes.firing_counts()).tolist())
    first, second = (row.latent for row in table.view()[:2])

    recorder = Recorder()
    logic.show_latent(first, recorder)
    logic.wait(timeout=120)
    overlay = recorder.last()[1]
    np.testing.assert_allclose(scene_api.node_grid(overlay).affine, scene_api.node_grid(t1n).affine)
    for latent in (first, second):
        if latent == second:
            logic.show_latent(second, recorder)
            logic.wait(timeout=120)
            assert recorder.last()[1].GetID() == overlay.GetID(), "stepping redraws the same node"
        expected = codes.latent_map(latent)  # on case.grid, computed here
        hot = np.unravel_index(int(np.argmax(expected)), expected.shape)
        ras = case.grid.affine @ [*hot, 1.0]
        values, _ = scene_api.node_array(overlay)
        assert values[voxel_at(overlay, ras[:3])] == pytest.approx(float(expected.max()), rel=1e-5)
        assert scene_api.overlay_latent(overlay) == latent

    # The shared rule (latent_focus): heat colour map over p50..p99 of the map here, transparent below p50 ...
    peak = float(codes.latent_map(second).max())
    rule = latent_focus(scene_api.node_array(overlay)[0])
    display = overlay.GetDisplayNode()
    assert display.GetColorNodeID() == HEAT_COLORMAP and rule.low < rule.high < peak
    assert display.GetLowerThreshold() == pytest.approx(rule.low, rel=1e-4)
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx(rule.window(), rel=1e-4)
    # ... and a threshold the user sets is in activation units.
    logic.set_overlay_threshold(0.8 * peak)
    assert display.GetLowerThreshold() == pytest.approx(0.8 * peak, rel=1e-5)
    with pytest.raises(ParameterError):
        logic.set_overlay_threshold(-1.0)
    mask_node = logic.set_overlay_style("labelmap")
    assert mask_node.IsA("vtkMRMLLabelMapVolumeNode") and logic.scene.GetNodeByID(overlay.GetID()) is None
    mask, _ = scene_api.node_array(mask_node)
    np.testing.assert_array_equal(mask > 0, case.to_source(codes.latent_map(second)) >= 0.8 * peak)


def steer_and_wait(logic, assets, strength, recorder=None):
    recorder = recorder or Recorder()
    logic.preview(SteeringRequest((assets.edema_latent,), (strength,), "additive", "tumour-margin", 4.0), recorder)
    logic.wait(timeout=120)
    return recorder


def test_steering_previews_accept_and_saved_files_read_back(logic, assets, tmp_path):
    import slicerio

    loaded, segmentation = analyse(logic, assets, assets.case)
    t1n, reference = loaded["t1n"], loaded["reference"]
    model_labels = labels_of(segmentation, t1n)
    truth = labels_of(reference, t1n)

    edema, preview = [], None
    for strength in (0.0, 1.5, 3.0):
        kind, node = steer_and_wait(logic, assets, strength).last()
        assert kind == "finished" and node.GetAttribute("MedSegLens.Role") == "preview"
        assert preview is None or node.GetID() == preview.GetID(), "the preview node is redrawn in place"
        preview = node
        shown = labels_of(preview, t1n)
        edema.append(int(np.count_nonzero(shown == EDEMA)))
        outcome = logic.analysis.preview.outcome
        expected = (
            2
            * np.count_nonzero((shown == EDEMA) & (truth == EDEMA))
            / (np.count_nonzero(shown == EDEMA) + np.count_nonzero(truth == EDEMA))
        )
        assert outcome.dice["ED"] == pytest.approx(expected, abs=1e-6)
    assert edema[0] < edema[1] < edema[2], edema

    # Newer requests supersede older ones: only the last is imported.
    recorders = [Recorder(), Recorder(), Recorder()]
    for strength, recorder in zip((0.5, 1.0, 2.0), recorders):
        logic.preview(SteeringRequest((assets.edema_latent,), (strength,), "additive", "tumour-margin", 4.0), recorder)
    with pytest.raises(ParameterError, match="still being computed"):
        logic.accept()
    logic.wait(timeout=120)
    assert [r.last()[0] for r in recorders] == ["superseded", "superseded", "finished"]
    assert logic.analysis.preview.outcome.spec["strengths"] == [2.0]

    accepted = logic.accept(name="planted corrected")
    assert accepted.GetID() != preview.GetID() and accepted.GetAttribute("MedSegLens.Role") == "correction"
    np.testing.assert_array_equal(labels_of(accepted, t1n), labels_of(preview, t1n))
    np.testing.assert_array_equal(labels_of(segmentation, t1n), model_labels), "the model's node is never modified"
    provenance = scene_api.read_provenance(accepted)
    assert (provenance.mode, provenance.latents, provenance.strengths) == ("additive", [assets.edema_latent], [2.0])
    assert provenance.source_segmentation == segmentation.GetName()
    assert provenance.region == {"kind": "tumour-margin", "margin_mm": 4.0}
    assert provenance.extra["dice"]["ED"] == logic.analysis.preview.outcome.dice["ED"]

    seg_file = logic.export_segmentation(accepted, tmp_path / "corrected.seg.nrrd")
    read = slicerio.read_segmentation(str(seg_file))
    assert [s["name"] for s in read["segments"]][:3] == ["NCR", "ED", "ET"]
    nifti = logic.export_segmentation(accepted, tmp_path / "corrected.nii.gz")
    image = nib.load(str(nifti))
    np.testing.assert_array_equal(np.asarray(image.dataobj), labels_of(accepted, t1n))
    np.testing.assert_allclose(image.affine, nib.load(str(assets.case / "planted-t1n.nii.gz")).affine)
    with pytest.raises(Exception, match="exists"):
        logic.export_segmentation(accepted, tmp_path / "corrected.nii.gz")

    bundle = logic.save_scene(tmp_path / "session.mrb")
    fresh = scene_api.create_headless_slicer().scene
    scene_api.load_scene(fresh, bundle)
    reloaded = fresh.GetFirstNodeByName("planted corrected")
    assert scene_api.read_provenance(reloaded) == provenance
    np.testing.assert_array_equal(
        labels_of(reloaded, fresh.GetFirstNodeByName(t1n.GetName())), labels_of(accepted, t1n)
    )


def test_cancel_and_crash_leave_the_scene_unchanged(logic, assets):
    analyse(logic, assets, assets.case)
    before = scene_state(logic.scene)
    recorder = Recorder()
    logic.preview(SteeringRequest((assets.edema_latent,), (2.0,), "additive"), recorder)
    logic.show_latent(logic.analysis.table.view()[0].latent, recorder)
    logic.cancel()
    assert [e for e in recorder.events if e[0] == "cancelled"] == [("cancelled",), ("cancelled",)]
    assert scene_state(logic.scene) == before and not logic.running

    volumes = logic.analysis.volumes
    logic.analyse(volumes, assets.model, assets.sae, recorder)
    os.kill(logic.worker.pid, 9)
    logic.wait(timeout=60)
    kind, message = recorder.last()
    assert kind == "failed" and "killed by SIGKILL" in message
    assert scene_state(logic.scene) == before
