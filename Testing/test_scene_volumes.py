"""A case loaded into a real slicer-core scene keeps the input's exact geometry."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("slicer")

from conftest import subprocess_env  # noqa: E402
from scene_cases import AFFINES, canonical_voxel, load_case  # noqa: E402
from vtkmodules.vtkCommonMath import vtkMatrix4x4  # noqa: E402

from MedSegLensLib.data import MODALITIES, Grid  # noqa: E402
from MedSegLensLib.errors import ParameterError  # noqa: E402
from MedSegLensLib.scene import (  # noqa: E402
    add_case_volumes,
    case_study_item,
    create_headless_slicer,
    node_array,
    node_grid,
    set_node_array,
)
from MedSegLensLib.scene.volume_arrays import affine_from_matrix  # noqa: E402

pytestmark = pytest.mark.scene


@pytest.fixture
def headless():
    return create_headless_slicer()


@pytest.mark.parametrize("kind", sorted(AFFINES))
def test_case_volumes_carry_the_input_geometry_and_voxels(tmp_path, headless, kind):
    case = load_case(tmp_path, kind)
    nodes = add_case_volumes(headless.scene, case)
    assert list(nodes.volumes) == list(MODALITIES)
    for modality, node in nodes.volumes.items():
        matrix = vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        ijk_to_ras = affine_from_matrix(matrix)
        np.testing.assert_allclose(ijk_to_ras, AFFINES[kind], atol=1e-9)
        array, grid = node_array(node)
        source = nib.load(case.files[modality])
        np.testing.assert_allclose(source.affine, ijk_to_ras, atol=1e-6)
        np.testing.assert_array_equal(array, np.asarray(source.dataobj, dtype=np.float32))
        assert grid.same_as(case.source_grid)


@pytest.mark.parametrize("kind", sorted(AFFINES))
def test_a_voxel_of_the_case_is_at_the_same_ras_point_in_the_node(tmp_path, headless, kind, rng):
    case = load_case(tmp_path, kind)
    node = add_case_volumes(headless.scene, case).volumes["t1c"]
    array, grid = node_array(node)
    inverse = np.linalg.inv(grid.affine)
    for ijk in rng.integers(0, case.grid.shape, size=(25, 3)):
        ras = case.grid.affine @ np.append(ijk, 1.0)
        node_ijk = np.round(inverse @ ras)[:3].astype(int)
        assert array[tuple(node_ijk)] == case.image[1][tuple(ijk)]


def test_flipped_input_gives_the_same_physical_image(tmp_path):
    plain, flipped = (load_case(tmp_path / kind, kind) for kind in ("ras", "flipped"))
    scenes = [create_headless_slicer() for _ in range(2)]
    volumes = [add_case_volumes(h.scene, c).volumes["t2f"] for h, c in zip(scenes, (plain, flipped))]
    arrays = [node_array(v) for v in volumes]
    assert not np.array_equal(arrays[0][0].shape, arrays[1][0].shape)  # really another voxel order
    for ras in ([4.0, -3.0, 6.0], [-8.0, 7.0, 0.0], [10.5, -11.0, 20.0]):
        values = []
        for array, grid in arrays:
            ijk = np.round(np.linalg.inv(grid.affine) @ np.append(ras, 1.0))[:3].astype(int)
            values.append(array[tuple(ijk)])
        assert values[0] == values[1]
        assert values[0] == plain.image[3][canonical_voxel(plain, ras)]


def test_volumes_sit_under_the_case_patient_and_study(tmp_path, headless):
    import slicer

    case = load_case(tmp_path)
    nodes = add_case_volumes(headless.scene, case)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(headless.scene)
    for node in nodes.volumes.values():
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == nodes.study_item
    patient = sh.GetItemParent(nodes.study_item)
    assert sh.GetItemLevel(patient) == "Patient" and sh.GetItemName(patient) == case.case_id
    assert sh.GetItemLevel(nodes.study_item) == "Study"
    assert case_study_item(headless.scene, case.case_id) == nodes.study_item  # found again, not duplicated


def test_mri_window_covers_the_brain(tmp_path, headless):
    case = load_case(tmp_path)
    node = add_case_volumes(headless.scene, case).volumes["t1n"]
    display = node.GetDisplayNode()
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeGrey"
    low, high = display.GetWindowLevelMin(), display.GetWindowLevelMax()
    values = case.image[0][case.image[0] != 0]
    assert low < np.median(values) < high
    assert np.mean((values >= low) & (values <= high)) > 0.95


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64, bool])
def test_arrays_round_trip_through_nodes(headless, rng, dtype):
    grid = Grid((5, 6, 7), np.diag([0.5, 1.0, 2.0, 1.0]))
    array = (rng.random(grid.shape) * 100).astype(dtype)
    node = headless.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "x")
    set_node_array(node, array, grid)
    back, back_grid = node_array(node)
    np.testing.assert_array_equal(back, array.astype(back.dtype))
    assert back_grid.same_as(grid) and node_grid(node).same_as(grid)
    assert back.dtype == (np.float32 if dtype in (np.float32, np.float64) else np.uint8 if dtype is bool else dtype)


def test_array_and_grid_must_agree(headless):
    node = headless.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "x")
    with pytest.raises(ParameterError, match="does not match grid"):
        set_node_array(node, np.zeros((4, 4, 4)), Grid((4, 4, 5), np.eye(4)))
    with pytest.raises(ParameterError, match="holds no image data"):
        node_array(node)


def test_a_foreign_slicer_package_gives_a_one_line_error(tmp_path):
    (tmp_path / "slicer.py").write_text("# an unrelated package that happens to be called slicer\n")
    env = subprocess_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    result = subprocess.run(
        [sys.executable, "-c", "import MedSegLensLib.scene"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "CompatibilityError: MedSegLensLib.scene needs 3D Slicer's MRML libraries" in result.stderr


def test_canonical_grid_agrees_with_reorienting_an_array(rng):
    import itertools

    from MedSegLensLib.data.geometry import canonical_grid, to_canonical

    for axes in itertools.permutations(range(3)):
        for signs in itertools.product((-1.0, 1.0), repeat=3):
            affine = np.eye(4)
            affine[:3, :3] = 0.0
            for column, (row, sign) in enumerate(zip(axes, signs)):
                affine[row, column] = sign * (1.0 + 0.5 * column)
            affine[:3, 3] = rng.normal(size=3) * 20
            grid = Grid((4, 5, 6), affine)
            _, expected = to_canonical(np.zeros(grid.shape), grid)
            assert canonical_grid(grid).same_as(expected)


def test_a_headless_scene_keeps_its_logics_alive():
    import gc

    scene = create_headless_slicer().scene
    gc.collect()
    for color in ("vtkMRMLColorTableNodeGrey", "vtkMRMLColorTableNodeCool1"):
        assert scene.GetNodeByID(color) is not None
    assert scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode") is not None
