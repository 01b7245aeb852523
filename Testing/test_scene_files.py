"""Provenance attributes and whole scenes survive saving (.mrb bundle and .mrml folder) and reloading."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

pytest.importorskip("slicer")

from scene_cases import load_case  # noqa: E402

from MedSegLensLib import __version__  # noqa: E402
from MedSegLensLib.data import MODALITIES  # noqa: E402
from MedSegLensLib.errors import InputError, IntegrityError, OutputError, ParameterError  # noqa: E402
from MedSegLensLib.scene import (  # noqa: E402
    Provenance,
    add_brats_segmentation,
    add_case_volumes,
    add_latent_overlay,
    attach_provenance,
    create_headless_slicer,
    load_scene,
    node_array,
    node_grid,
    overlay_latent,
    read_provenance,
    save_scene,
    segmentation_to_labels,
)
from MedSegLensLib.scene.provenance import PROVENANCE_ATTRIBUTE  # noqa: E402

pytestmark = pytest.mark.scene


def steering_record(**changes) -> Provenance:
    fields = dict(
        latents=[17, 230],
        strengths=[2.5, -1.0],
        mode="additive",
        model_sha256="a" * 64,
        sae_sha256="b" * 64,
        layer="decoder.1",
        region={"kind": "box", "ijk_min": [2, 3, 4], "ijk_max": [9, 9, 9]},
        source_segmentation="Tiny-001 model",
        extra={"dice_before": 0.41},
    )
    fields.update(changes)
    return Provenance(**fields)


@pytest.fixture
def populated(tmp_path):
    """A scene with a case, its model segmentation, a steered correction with provenance, and an overlay."""
    headless = create_headless_slicer()
    case = load_case(tmp_path / "data")
    nodes = add_case_volumes(headless.scene, case)
    scene = headless.scene
    model = add_brats_segmentation(scene, case.label, case.grid, nodes.reference, "Tiny-001 model")
    attach_provenance(model, steering_record(latents=[], strengths=[], mode="none", sae_sha256=None, region=None))
    corrected = np.where(case.label == 1, 3, case.label).astype(np.uint8)
    correction = add_brats_segmentation(
        scene, corrected, case.grid, nodes.reference, "Tiny-001 corrected", role="correction"
    )
    attach_provenance(correction, steering_record())
    activation = np.zeros(case.grid.shape, np.float32)
    activation[4:8, 5:9, 6:10] = 3.0
    add_latent_overlay(scene, activation, case.grid, nodes.reference, "latent 17", latent=17)
    return headless, case, corrected


def test_provenance_round_trips_through_the_node_attribute(tmp_path):
    headless = create_headless_slicer()
    node = headless.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "x")
    assert read_provenance(node) is None
    record = steering_record()
    attach_provenance(node, record)
    back = read_provenance(node)
    assert back == record
    assert back.tool_version == __version__ and back.created.endswith("+00:00")


def test_provenance_is_validated():
    with pytest.raises(ParameterError, match="2 latents but 1 strengths"):
        steering_record(strengths=[1.0])
    with pytest.raises(ParameterError, match="mode 'subtract'"):
        steering_record(mode="subtract")
    with pytest.raises(ParameterError, match="needs at least one latent and the SAE's hash"):
        steering_record(sae_sha256=None)
    with pytest.raises(ParameterError, match="finite"):
        steering_record(strengths=[float("nan"), 1.0])


def test_damaged_provenance_is_reported():
    headless = create_headless_slicer()
    node = headless.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "x")
    node.SetAttribute(PROVENANCE_ATTRIBUTE, '{"latents": [1], "strengths": ')
    with pytest.raises(IntegrityError, match="provenance attribute is damaged"):
        read_provenance(node)
    node.SetAttribute(PROVENANCE_ATTRIBUTE, '{"latents": [1]}')
    with pytest.raises(IntegrityError, match="damaged"):
        read_provenance(node)


@pytest.mark.parametrize("target", ["bundle.mrb", "scene-folder"])
def test_saved_scene_reloads_with_data_geometry_and_provenance(populated, tmp_path, target):
    headless, case, corrected = populated
    written = save_scene(headless.scene, tmp_path / target)
    assert written.is_file() and written.suffix in (".mrb", ".mrml")
    fresh = create_headless_slicer()
    load_scene(fresh.scene, written)
    scene = fresh.scene

    correction = scene.GetFirstNodeByName("Tiny-001 corrected")
    original = read_provenance(headless.scene.GetFirstNodeByName("Tiny-001 corrected"))
    assert read_provenance(correction) == original
    assert read_provenance(scene.GetFirstNodeByName("Tiny-001 model")).mode == "none"
    np.testing.assert_array_equal(segmentation_to_labels(correction, case.grid), corrected)
    np.testing.assert_array_equal(
        segmentation_to_labels(scene.GetFirstNodeByName("Tiny-001 model"), case.grid), case.label
    )
    for channel, modality in enumerate(MODALITIES):
        node = scene.GetFirstNodeByName(f"Tiny-001-{modality}")
        array, grid = node_array(node)
        assert grid.same_as(case.source_grid)
        np.testing.assert_array_equal(array, case.to_source(case.image[channel]))
    overlay = scene.GetFirstNodeByName("latent 17")
    assert overlay_latent(overlay) == 17 and node_grid(overlay).same_as(case.source_grid)
    assert overlay.GetDisplayNode().GetLowerThreshold() == pytest.approx(1.5)


def test_reloaded_scene_can_be_saved_again(populated, tmp_path):
    headless, case, corrected = populated
    first = save_scene(headless.scene, tmp_path / "one.mrb")
    fresh = create_headless_slicer()
    load_scene(fresh.scene, first)
    second = save_scene(fresh.scene, tmp_path / "two.mrb")
    again = create_headless_slicer()
    load_scene(again.scene, second)
    node = again.scene.GetFirstNodeByName("Tiny-001 corrected")
    np.testing.assert_array_equal(segmentation_to_labels(node, case.grid), corrected)
    assert read_provenance(node).latents == [17, 230]


def test_scene_save_never_replaces_user_files_silently(populated, tmp_path):
    headless, _, _ = populated
    bundle = tmp_path / "scene.mrb"
    bundle.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        save_scene(headless.scene, bundle)
    assert bundle.read_bytes() == b"precious"
    save_scene(headless.scene, bundle, overwrite=True)
    assert bundle.read_bytes()[:2] == b"PK"
    folder = tmp_path / "existing"
    folder.mkdir()
    with pytest.raises(OutputError, match="already exists"):
        save_scene(headless.scene, folder)
    with pytest.raises(OutputError, match="give a folder"):
        save_scene(headless.scene, tmp_path / "x.mrml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "existing", "scene.mrb"]


def test_unreadable_scenes_are_reported(tmp_path):
    headless = create_headless_slicer()
    with pytest.raises(InputError, match="scene file not found"):
        load_scene(headless.scene, tmp_path / "missing.mrb")
    broken = tmp_path / "broken.mrb"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="broken.mrb: not a readable Slicer scene bundle"):
        load_scene(headless.scene, broken)
    empty_zip = tmp_path / "empty.mrb"
    with zipfile.ZipFile(empty_zip, "w") as archive:
        archive.writestr("readme.txt", "no scene in here")
    cwd = os.getcwd()
    with pytest.raises(InputError, match="empty.mrb: not a readable Slicer scene bundle"):
        load_scene(headless.scene, empty_zip)
    assert os.getcwd() == cwd
    with pytest.raises(InputError, match="expected .mrb or .mrml"):
        other = tmp_path / "scene.txt"
        other.write_text("x")
        load_scene(headless.scene, other)
