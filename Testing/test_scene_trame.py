"""The scene functions work unchanged on trame-slicer's scene (the browser viewer's)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("slicer")
trame_core = pytest.importorskip("trame_slicer.core")

from scene_cases import load_case  # noqa: E402

from MedSegLensLib.scene import (  # noqa: E402
    add_brats_segmentation,
    add_case_volumes,
    add_latent_overlay,
    load_scene,
    render_slice,
    save_scene,
    segmentation_to_labels,
)

pytestmark = pytest.mark.scene


def test_case_segmentation_overlay_render_and_save_on_a_trame_slicer_scene(tmp_path):
    app = trame_core.SlicerApp()
    case = load_case(tmp_path, "flipped")
    nodes = add_case_volumes(app.scene, case)
    segmentation = add_brats_segmentation(app.scene, case.label, case.grid, nodes.reference, "model", show_3d=True)
    activation = np.zeros(case.grid.shape, np.float32)
    activation[2:7, 3:8, 12:17] = 4.0
    overlay = add_latent_overlay(app.scene, activation, case.grid, nodes.reference, "latent")
    plain = render_slice(app.scene, nodes.reference, orientation="coronal", size=(96, 96))
    shown = render_slice(app.scene, nodes.reference, overlay, segmentation, "coronal", size=(96, 96))
    assert np.any(plain.rgb != shown.rgb)
    np.testing.assert_array_equal(segmentation_to_labels(segmentation, case.grid), case.label)
    bundle = save_scene(app.scene, tmp_path / "viewer.mrb")
    reopened = trame_core.SlicerApp()
    load_scene(reopened.scene, bundle)
    np.testing.assert_array_equal(
        segmentation_to_labels(reopened.scene.GetFirstNodeByName("model"), case.grid), case.label
    )
