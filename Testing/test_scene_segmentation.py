"""BraTS labels <-> segmentation nodes, .seg.nrrd (read back with slicerio) and NIfTI exports."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("slicer")
slicerio = pytest.importorskip("slicerio")

from scene_cases import AFFINES, load_case  # noqa: E402

from MedSegLensLib.errors import InputError, OutputError, ParameterError  # noqa: E402
from MedSegLensLib.scene import (  # noqa: E402
    BRATS_REGIONS,
    COLOR_TABLE_NAME,
    add_brats_segmentation,
    add_case_volumes,
    create_headless_slicer,
    has_closed_surface,
    load_segmentation,
    parent_item_of,
    region_of_segment,
    save_segmentation,
    segmentation_to_labels,
    terminology_entry,
    update_preview_segmentation,
    write_brats_color_table,
)

pytestmark = pytest.mark.scene
ROOT = Path(__file__).resolve().parents[1]
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@pytest.fixture(params=sorted(AFFINES))
def loaded(request, tmp_path):
    headless = create_headless_slicer()
    case = load_case(tmp_path, request.param)
    return headless, case, add_case_volumes(headless.scene, case)


def _segments(node):
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]


def test_segments_are_named_coloured_and_coded(loaded):
    headless, case, nodes = loaded
    node = add_brats_segmentation(headless.scene, case.label, case.grid, nodes.reference, "model")
    segments = _segments(node)
    assert [s.GetName() for s in segments] == ["NCR", "ED", "ET"]
    for segment, region in zip(segments, BRATS_REGIONS):
        np.testing.assert_allclose(segment.GetColor(), np.array(region.color) / 255.0)
        assert segment.GetLabelValue() == region.value
        fields = segment.GetTerminology().split("~")
        assert fields[1] == "SCT^49755003^Morphologically Altered Structure"
        assert fields[2].split("^")[:2] == ["SCT", {1: "6574001", 2: "79654002", 3: "86049000"}[region.value]]
    table = headless.scene.GetNodeByID(node.GetLabelmapConversionColorTableNodeID())
    assert table.GetName() == COLOR_TABLE_NAME
    assert [table.GetColorName(v) for v in (1, 2, 3)] == ["NCR", "ED", "ET"]
    assert "SCT^79654002^Edema" in table.GetTerminologyAsString(2)
    assert parent_item_of(headless.scene, node) == nodes.study_item


def test_labels_read_back_on_the_case_grid_and_the_input_grid(loaded):
    headless, case, nodes = loaded
    node = add_brats_segmentation(headless.scene, case.label, case.grid, nodes.reference, "model")
    np.testing.assert_array_equal(segmentation_to_labels(node, case.grid), case.label)
    np.testing.assert_array_equal(segmentation_to_labels(node, case.source_grid), case.to_source(case.label))


def test_import_and_export_leave_no_helper_nodes(loaded):
    headless, case, nodes = loaded
    scene = headless.scene
    add_brats_segmentation(scene, case.label, case.grid, nodes.reference, "first")  # colour table now exists
    before = scene.GetNumberOfNodes()
    node = add_brats_segmentation(scene, case.label, case.grid, nodes.reference, "second")
    segmentation_to_labels(node, case.grid)
    added = {scene.GetNthNode(i).GetClassName() for i in range(before, scene.GetNumberOfNodes())}
    assert added == {"vtkMRMLSegmentationNode", "vtkMRMLSegmentationDisplayNode"}


def test_seg_nrrd_reads_back_through_slicerio(loaded, tmp_path):
    headless, case, nodes = loaded
    node = add_brats_segmentation(headless.scene, case.label, case.grid, nodes.reference, "model")
    path = save_segmentation(node, tmp_path / "model.seg.nrrd")
    read = slicerio.read_segmentation(str(path))
    names = [s["name"] for s in read["segments"]]
    assert names == ["NCR", "ED", "ET"]
    for segment, region in zip(read["segments"], BRATS_REGIONS):
        np.testing.assert_allclose(segment["color"], np.array(region.color) / 255.0, atol=1e-6)
        assert segment["terminology"]["category"] == ["SCT", "49755003", "Morphologically Altered Structure"]
        assert segment["terminology"]["type"] == [region.type.scheme, region.type.value, region.type.meaning]
    # Voxels: slicerio's IJK-to-LPS is the input's affine (in LPS), the labels those of the input file.
    np.testing.assert_allclose(read["ijkToLPS"], LPS @ case.source_grid.affine, atol=1e-6)
    expected = case.to_source(case.label)
    offset = read.get("referenceImageExtentOffset", [0, 0, 0])
    voxels = np.zeros(expected.shape, np.uint8)
    extent = tuple(slice(o, o + n) for o, n in zip(offset, read["voxels"].shape))
    voxels[extent] = read["voxels"]
    for segment in read["segments"]:
        assert segment["labelValue"] == [r.value for r in BRATS_REGIONS if r.name == segment["name"]][0]
    np.testing.assert_array_equal(voxels, expected)


def test_seg_nrrd_loads_back_into_a_scene(loaded, tmp_path):
    headless, case, nodes = loaded
    node = add_brats_segmentation(headless.scene, case.label, case.grid, nodes.reference, "model")
    path = save_segmentation(node, tmp_path / "model.seg.nrrd")
    other = create_headless_slicer()
    loaded_node = load_segmentation(other.scene, path)
    assert [s.GetTerminology() for s in _segments(loaded_node)] == [terminology_entry(r) for r in BRATS_REGIONS]
    np.testing.assert_array_equal(segmentation_to_labels(loaded_node, case.grid), case.label)


def test_nifti_export_matches_the_input_file(loaded, tmp_path):
    headless, case, nodes = loaded
    node = add_brats_segmentation(headless.scene, case.label, case.grid, nodes.reference, "model")
    path = save_segmentation(node, tmp_path / "model.nii.gz", reference_node=nodes.reference)
    written = nib.load(path)
    reference = nib.load(case.files["seg"])
    np.testing.assert_allclose(written.affine, reference.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(written.dataobj), np.asarray(reference.dataobj))


def test_exports_refuse_to_overwrite_and_need_a_reference_for_labelmaps(loaded, tmp_path):
    headless, case, nodes = loaded
    node = add_brats_segmentation(headless.scene, case.label, case.grid, nodes.reference, "model")
    target = tmp_path / "model.seg.nrrd"
    target.write_text("user data")
    with pytest.raises(OutputError, match="already exists"):
        save_segmentation(node, target)
    assert target.read_text() == "user data"
    save_segmentation(node, target, overwrite=True)
    assert slicerio.read_segmentation(str(target))["segments"]
    with pytest.raises(ParameterError, match="needs the input volume node"):
        save_segmentation(node, tmp_path / "x.nii.gz")
    with pytest.raises(ParameterError, match=r"\.seg\.nrrd, \.nii\.gz"):
        save_segmentation(node, tmp_path / "x.stl")


def test_absent_regions_still_get_their_segment(loaded):
    headless, case, nodes = loaded
    labels = np.where(case.label == 3, 0, case.label).astype(np.uint8)
    node = add_brats_segmentation(headless.scene, labels, case.grid, nodes.reference, "no ET")
    assert [s.GetName() for s in _segments(node)] == ["NCR", "ED", "ET"]
    np.testing.assert_array_equal(segmentation_to_labels(node, case.grid), labels)
    empty = add_brats_segmentation(headless.scene, np.zeros_like(labels), case.grid, nodes.reference, "empty")
    assert [s.GetLabelValue() for s in _segments(empty)] == [1, 2, 3]
    assert not segmentation_to_labels(empty, case.grid).any()


def test_a_correction_is_a_new_node_and_the_original_is_untouched(loaded):
    headless, case, nodes = loaded
    original = add_brats_segmentation(headless.scene, case.label, case.grid, nodes.reference, "model", show_3d=True)
    corrected_labels = np.where(case.label == 2, 0, case.label).astype(np.uint8)
    correction = add_brats_segmentation(
        headless.scene,
        corrected_labels,
        case.grid,
        nodes.reference,
        "corrected",
        role="correction",
        show_3d=has_closed_surface(original),
    )
    assert correction.GetID() != original.GetID()
    assert has_closed_surface(correction)
    np.testing.assert_array_equal(segmentation_to_labels(original, case.grid), case.label)
    np.testing.assert_array_equal(segmentation_to_labels(correction, case.grid), corrected_labels)
    with pytest.raises(ParameterError, match="not a preview"):
        update_preview_segmentation(original, corrected_labels, case.grid, nodes.reference)


def test_preview_is_redrawn_in_place_with_its_3d_surface(loaded):
    headless, case, nodes = loaded
    preview = add_brats_segmentation(
        headless.scene, case.label, case.grid, nodes.reference, "preview", role="preview", show_3d=True
    )
    shrunk = np.where(case.label == 2, 0, case.label).astype(np.uint8)
    update_preview_segmentation(preview, shrunk, case.grid, nodes.reference)
    assert [s.GetName() for s in _segments(preview)] == ["NCR", "ED", "ET"]
    assert has_closed_surface(preview)
    np.testing.assert_array_equal(segmentation_to_labels(preview, case.grid), shrunk)


def test_segments_are_recognised_by_terminology_or_name(loaded):
    headless, case, nodes = loaded
    node = add_brats_segmentation(headless.scene, case.label, case.grid, nodes.reference, "model")
    ncr, ed, et = _segments(node)
    ncr.SetName("core (renamed by a user)")  # terminology still says Necrosis
    ed.SetTerminology("")
    ed.SetName("Edema")
    assert region_of_segment(ncr).value == 1 and region_of_segment(ed).value == 2
    np.testing.assert_array_equal(segmentation_to_labels(node, case.grid), case.label)
    et.SetTerminology("")
    et.SetName("brain")
    with pytest.raises(InputError, match="'brain' of 'model' is not a BraTS region"):
        segmentation_to_labels(node, case.grid)


def test_bad_label_arrays_are_refused(loaded):
    headless, case, nodes = loaded
    with pytest.raises(ParameterError, match=r"label values \[4\]"):
        add_brats_segmentation(
            headless.scene, np.where(case.label == 3, 4, case.label), case.grid, nodes.reference, "x"
        )
    with pytest.raises(ParameterError, match="has shape"):
        add_brats_segmentation(headless.scene, case.label[:-1], case.grid, nodes.reference, "x")
    with pytest.raises(ParameterError, match="role 'final'"):
        add_brats_segmentation(headless.scene, case.label, case.grid, nodes.reference, "x", role="final")
    assert headless.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0


def test_shipped_colour_table_is_the_one_the_code_writes(tmp_path):
    import slicer

    shipped = ROOT / "Resources" / "ColorTables" / "MedSegLens-BraTS.csv"
    written = write_brats_color_table(tmp_path / "table.csv")
    assert shipped.read_text() == written.read_text()
    table = slicer.vtkMRMLColorTableNode()
    storage = slicer.vtkMRMLColorTableStorageNode()
    storage.SetFileName(str(shipped))
    assert storage.ReadData(table)
    assert table.GetContainsTerminology()
    assert [table.GetColorName(v) for v in (1, 2, 3)] == ["NCR", "ED", "ET"]
    assert "SCT^86049000^Neoplasm, Primary" in table.GetTerminologyAsString(3)
