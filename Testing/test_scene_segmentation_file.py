"""Every .seg.nrrd the project writes is a Slicer segmentation: read back with slicerio, it has the three BraTS segments
(names, colours, SCT codes), the input's geometry and the provenance record.

Writers covered: `medseglens segment --out X.seg.nrrd`, `medseglens steer` (`write_steered_segmentation`), the Slicer
module's Export and the viewer's Accept (both `scene.save_segmentation`, with and without a reference volume).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

slicerio = pytest.importorskip("slicerio")
scene_api = pytest.importorskip("MedSegLensLib.scene")  # slicer-core

from MedSegLensLib.data.geometry import Grid  # noqa: E402
from MedSegLensLib.data.volumes import read_volume_metadata  # noqa: E402
from MedSegLensLib.errors import ParameterError  # noqa: E402
from MedSegLensLib.provenance import Provenance  # noqa: E402
from MedSegLensLib.segmentation_file import PROVENANCE_FIELD, RAS_TO_LPS, write_segmentation_file  # noqa: E402

pytestmark = pytest.mark.scene
EXPECTED = {"NCR": ("6574001", (220, 50, 47)), "ED": ("79654002", (60, 180, 75)), "ET": ("86049000", (255, 225, 25))}
# An oblique, left-right flipped grid: geometry mistakes show up as a wrong ijkToLPS or misplaced voxels.
AFFINE = np.array([[-2.0, 0.1, 0.0, 40.0], [0.0, 1.5, 0.2, -12.0], [0.0, 0.0, 3.0, 7.0], [0, 0, 0, 1]])


def _labels(shape=(12, 10, 8), seed=1) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[2:9, 2:8, 2:6] = 2
    labels[4:7, 3:6, 3:5] = 1
    labels[5, 4, 4] = 3
    return labels


def _check(path, labels: np.ndarray, affine: np.ndarray, provenance: Provenance | None) -> dict:
    segmentation = slicerio.read_segmentation(str(path))
    segments = {s["name"]: s for s in segmentation["segments"]}
    assert set(segments) == set(EXPECTED)
    for name, (code, colour) in EXPECTED.items():
        segment = segments[name]
        assert segment["terminology"]["category"][:2] == ["SCT", "49755003"]
        assert segment["terminology"]["type"][:2] == ["SCT", code]
        assert np.allclose(segment["color"], np.array(colour) / 255.0, atol=1e-3)
        value = segment["labelValue"]
        expected_value = {"NCR": 1, "ED": 2, "ET": 3}[name]
        np.testing.assert_array_equal(segmentation["voxels"] == value, labels == expected_value)
    np.testing.assert_allclose(segmentation["ijkToLPS"], RAS_TO_LPS @ affine, atol=1e-4)
    stored = read_volume_metadata(path).get(PROVENANCE_FIELD)
    if provenance is None:
        assert stored is None
    else:
        assert Provenance.from_json(stored) == provenance
    return segmentation


def test_the_writer_stores_segments_geometry_and_provenance(tmp_path):
    labels = _labels()
    record = Provenance(
        latents=[4],
        strengths=[2.0],
        mode="additive",
        model_sha256="ab" * 32,
        sae_sha256="01" * 32,
        region={"kind": "none"},
    )
    path = write_segmentation_file(labels, Grid(labels.shape, AFFINE), tmp_path / "x.seg.nrrd", record.to_json())
    _check(path, labels, AFFINE, record)
    with pytest.raises(ParameterError, match="BraTS labels"):
        write_segmentation_file(labels + 3, Grid(labels.shape, AFFINE), tmp_path / "bad.seg.nrrd")
    with pytest.raises(ParameterError, match=".seg.nrrd"):
        write_segmentation_file(labels, Grid(labels.shape, AFFINE), tmp_path / "x.nii.gz")


def test_slicer_reads_the_file_as_coded_segments(tmp_path):
    labels = _labels()
    grid = Grid(labels.shape, AFFINE)
    path = write_segmentation_file(labels, grid, tmp_path / "x.seg.nrrd")
    scene = scene_api.create_headless_slicer().scene
    node = scene_api.load_segmentation(scene, path)
    segmentation = node.GetSegmentation()
    segments = [segmentation.GetSegment(segmentation.GetNthSegmentID(i)) for i in range(3)]
    assert [s.GetTerminology() for s in segments] == [scene_api.terminology_entry(r) for r in scene_api.BRATS_REGIONS]
    np.testing.assert_array_equal(scene_api.segmentation_to_labels(node, grid), labels)


def test_a_file_slicer_loaded_is_saved_again_on_its_own_grid(tmp_path):
    """The viewer accepts segmentations it read from files: with no reference volume, the file's own grid is used."""
    labels = _labels()
    record = Provenance(latents=[], strengths=[], mode="none", model_sha256="aa" * 32)
    first = write_segmentation_file(labels, Grid(labels.shape, AFFINE), tmp_path / "a.seg.nrrd", record.to_json())
    scene = scene_api.create_headless_slicer().scene
    node = scene_api.load_segmentation(scene, first)
    scene_api.attach_provenance(node, record)
    _check(scene_api.save_segmentation(node, tmp_path / "b.seg.nrrd"), labels, AFFINE, record)


@pytest.mark.parametrize("with_reference", [True, False], ids=["export", "viewer-accept"])
def test_slicer_export_and_viewer_accept_write_through_the_same_writer(tmp_path, with_reference):
    labels = _labels()
    grid = Grid(labels.shape, AFFINE)
    scene = scene_api.create_headless_slicer().scene
    volume = scene_api.add_volume_node(scene, np.zeros(labels.shape, np.float32), grid, "t1n")
    node = scene_api.add_brats_segmentation(scene, labels, grid, volume, "corrected", role="correction")
    record = Provenance(
        latents=[1], strengths=[0.5], mode="multiplicative", model_sha256="cd" * 32, sae_sha256="02" * 32
    )
    scene_api.attach_provenance(node, record)
    path = scene_api.save_segmentation(
        node, tmp_path / "out.seg.nrrd", reference_node=volume if with_reference else None
    )
    _check(path, labels, AFFINE, record)


@pytest.fixture(scope="module")
def tiny_model_and_case(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from slicer_support import flipped_copy
    from steering_support import write_planted_case

    from MedSegLensLib.models import build_network, save_model, tiny_config

    root = tmp_path_factory.mktemp("segfile")
    torch.manual_seed(0)
    config = tiny_config("unet")
    save_model(build_network(config), config, root / "model", overwrite=True)
    case = flipped_copy(write_planted_case(root / "cases", "planted", seed=5), root / "flipped")
    return root / "model", case


def test_cli_segment_writes_a_slicer_segmentation_in_the_inputs_geometry(tmp_path, tiny_model_and_case):
    from MedSegLensLib.cli.main import main
    from MedSegLensLib.data import read_case

    model, case_dir = tiny_model_and_case
    out = tmp_path / "seg.seg.nrrd"
    assert main(["segment", "--model", str(model), "--case", str(case_dir), "--out", str(out), "--device", "cpu"]) == 0
    case = read_case(case_dir, with_labels=False)
    segmentation = slicerio.read_segmentation(str(out))
    assert [s["name"] for s in segmentation["segments"]] == ["NCR", "ED", "ET"]
    np.testing.assert_allclose(segmentation["ijkToLPS"], RAS_TO_LPS @ case.source_grid.affine, atol=1e-4)
    assert segmentation["voxels"].shape == tuple(case.source_grid.shape)
    record = Provenance.from_json(read_volume_metadata(out)[PROVENANCE_FIELD])
    assert record.mode == "none" and record.extra["command"] == "segment" and len(record.model_sha256) == 64


def test_cli_steer_writes_a_slicer_segmentation_with_its_provenance(tmp_path, tiny_model_and_case):
    from MedSegLensLib.data import read_case
    from MedSegLensLib.steering import read_segmentation_provenance, read_sidecar_provenance, write_steered_segmentation

    _, case_dir = tiny_model_and_case
    case = read_case(case_dir, with_labels=True)
    record = Provenance(
        latents=[2],
        strengths=[3.0],
        mode="additive",
        model_sha256="ef" * 32,
        sae_sha256="03" * 32,
        region={"kind": "tumour-margin", "margin_mm": 10.0},
    )
    path, sidecar = write_steered_segmentation(case, case.label, tmp_path / "steered.seg.nrrd", record)
    source_labels = case.to_source(case.label)
    _check(path, source_labels, case.source_grid.affine, record)
    assert read_segmentation_provenance(path) == record == read_sidecar_provenance(path)
    assert json.loads(sidecar.read_text())["latents"] == [2]
