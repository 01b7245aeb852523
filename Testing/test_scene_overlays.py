"""Latent overlay nodes: aligned with the input, thresholded, updated in place."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("slicer")

from scene_cases import AFFINES, load_case  # noqa: E402

from MedSegLensLib.errors import ParameterError  # noqa: E402
from MedSegLensLib.scene import (  # noqa: E402
    add_case_volumes,
    add_latent_overlay,
    create_headless_slicer,
    node_array,
    node_grid,
    overlay_latent,
    parent_item_of,
    set_overlay_threshold,
    update_latent_overlay,
)

pytestmark = pytest.mark.scene


@pytest.fixture(params=sorted(AFFINES))
def loaded(request, tmp_path):
    headless = create_headless_slicer()
    case = load_case(tmp_path, request.param)
    return headless, case, add_case_volumes(headless.scene, case)


def hot_map(case, corner=(3, 4, 5), size=(3, 2, 4), value=5.0, rng=None) -> np.ndarray:
    """A map on the case grid: a hot box plus weak noise elsewhere."""
    rng = rng or np.random.default_rng(1)
    activation = (rng.random(case.grid.shape) * 0.5).astype(np.float32)
    activation[tuple(slice(c, c + s) for c, s in zip(corner, size))] = value
    return activation


def _node_value_at(node, ras):
    array, grid = node_array(node)
    ijk = np.round(np.linalg.inv(grid.affine) @ np.append(ras, 1.0))[:3].astype(int)
    return array[tuple(ijk)]


@pytest.mark.parametrize("style", ["volume", "labelmap"])
def test_a_hot_voxel_is_hot_at_the_same_ras_point(loaded, style):
    headless, case, nodes = loaded
    activation = hot_map(case)
    node = add_latent_overlay(
        headless.scene, activation, case.grid, nodes.reference, "latent 12", style=style, threshold=2.0, latent=12
    )
    assert node_grid(node).same_as(case.source_grid)
    assert parent_item_of(headless.scene, node) == nodes.study_item
    assert overlay_latent(node) == 12
    for ijk in np.ndindex(*case.grid.shape):
        if (sum(ijk) % 7) and not (3 <= ijk[0] < 6):
            continue  # check the hot box's slab and a sparse sample elsewhere
        ras = (case.grid.affine @ np.append(ijk, 1.0))[:3]
        value = _node_value_at(node, ras)
        if style == "volume":
            assert value == activation[ijk]
        else:
            assert value == (1 if activation[ijk] >= 2.0 else 0)
    array, _ = node_array(node)
    shown = array >= 2.0 if style == "volume" else array == 1
    assert shown.sum() == 3 * 2 * 4


def test_volume_overlay_shows_only_voxels_above_the_threshold(loaded):
    headless, case, nodes = loaded
    node = add_latent_overlay(headless.scene, hot_map(case), case.grid, nodes.reference, "latent", threshold=2.0)
    display = node.GetDisplayNode()
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeCool1"
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(2.0)
    assert display.GetUpperThreshold() > 5.0
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((2.0, 5.0))
    set_overlay_threshold(node, 1.0)
    assert display.GetLowerThreshold() == pytest.approx(1.0) and display.GetWindowLevelMax() == pytest.approx(5.0)


def test_default_threshold_is_half_the_peak(loaded):
    headless, case, nodes = loaded
    node = add_latent_overlay(headless.scene, hot_map(case, value=8.0), case.grid, nodes.reference, "latent")
    assert node.GetDisplayNode().GetLowerThreshold() == pytest.approx(4.0)
    silent = add_latent_overlay(
        headless.scene, np.zeros(case.grid.shape, np.float32), case.grid, nodes.reference, "off"
    )
    assert silent.GetDisplayNode().GetLowerThreshold() > 0  # a latent that never fires shows nothing


@pytest.mark.parametrize("style", ["volume", "labelmap"])
def test_stepping_through_latents_updates_the_node_in_place(loaded, style):
    headless, case, nodes = loaded
    scene = headless.scene
    node = add_latent_overlay(scene, hot_map(case), case.grid, nodes.reference, "latent 1", style=style, latent=1)
    display_id = node.GetDisplayNodeID()
    count = scene.GetNumberOfNodes()
    second = hot_map(case, corner=(9, 10, 11), value=3.0)
    update_latent_overlay(node, second, case.grid, latent=2, name="latent 2")
    assert scene.GetNumberOfNodes() == count and node.GetDisplayNodeID() == display_id
    assert overlay_latent(node) == 2 and node.GetName() == "latent 2"
    assert node_grid(node).same_as(case.source_grid)
    hot_ras = (case.grid.affine @ np.array([10, 11, 12, 1.0]))[:3]
    old_ras = (case.grid.affine @ np.array([4, 4, 6, 1.0]))[:3]
    expected_hot = 3.0 if style == "volume" else 1
    assert _node_value_at(node, hot_ras) == expected_hot
    assert _node_value_at(node, old_ras) < 1.0
    if style == "volume":
        assert node.GetDisplayNode().GetLowerThreshold() == pytest.approx(1.5)


def test_labelmap_overlay_threshold_changes_through_update(loaded):
    headless, case, nodes = loaded
    activation = hot_map(case)
    node = add_latent_overlay(headless.scene, activation, case.grid, nodes.reference, "mask", style="labelmap")
    with pytest.raises(ParameterError, match="is a labelmap"):
        set_overlay_threshold(node, 0.1)
    update_latent_overlay(node, activation, case.grid, threshold=0.25)
    array, _ = node_array(node)
    assert array.sum() == (activation >= 0.25).sum()
    table = node.GetDisplayNode().GetColorNode()
    assert table.GetColorName(1) == "Latent active"


def test_bad_maps_are_refused(loaded):
    headless, case, nodes = loaded
    activation = hot_map(case)
    activation[0, 0, 0] = np.nan
    with pytest.raises(ParameterError, match="NaN or Inf"):
        add_latent_overlay(headless.scene, activation, case.grid, nodes.reference, "x")
    with pytest.raises(ParameterError, match="has shape"):
        add_latent_overlay(headless.scene, hot_map(case)[1:], case.grid, nodes.reference, "x")
    with pytest.raises(ParameterError, match="style 'contour'"):
        add_latent_overlay(headless.scene, hot_map(case), case.grid, nodes.reference, "x", style="contour")
    with pytest.raises(ParameterError, match="colour map 'Viridis'"):
        add_latent_overlay(headless.scene, hot_map(case), case.grid, nodes.reference, "x", colormap_id="Viridis")
    assert headless.scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode") == 4  # only the case's own volumes


def test_removing_an_overlay_leaves_nothing_behind(loaded, capfd):
    from MedSegLensLib.scene import remove_node

    headless, case, nodes = loaded
    scene = headless.scene
    for style in ("volume", "labelmap"):  # the shared colour tables exist from now on
        add_latent_overlay(scene, hot_map(case), case.grid, nodes.reference, "first", style=style)
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    for style in ("volume", "labelmap"):
        node = add_latent_overlay(scene, hot_map(case), case.grid, nodes.reference, "step", style=style)
        remove_node(scene, node)
        assert {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())} == before
    add_latent_overlay(scene, hot_map(case), case.grid, nodes.reference, "next")
    assert "inconsistency" not in capfd.readouterr().err
