"""Slice views rendered by Slicer's slice logic, checked pixel by pixel against the maps and labels."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("slicer")

from scene_cases import AFFINES, load_case  # noqa: E402

from MedSegLensLib.errors import OutputError, ParameterError  # noqa: E402
from MedSegLensLib.scene import (  # noqa: E402
    BRATS_REGIONS,
    add_brats_segmentation,
    add_case_volumes,
    add_latent_overlay,
    create_headless_slicer,
    render_orthogonal,
    render_slice,
)

pytestmark = pytest.mark.scene
SIZE = (160, 160)
HOT = (slice(2, 7), slice(3, 8), slice(12, 17))  # canonical voxels, away from the tumour
HOT_CENTRE = (4, 5, 14)


@pytest.fixture(params=sorted(AFFINES))
def scene_with_overlay(request, tmp_path):
    headless = create_headless_slicer()
    case = load_case(tmp_path, request.param)
    nodes = add_case_volumes(headless.scene, case)
    activation = np.zeros(case.grid.shape, np.float32)
    activation[HOT] = 4.0
    overlay = add_latent_overlay(headless.scene, activation, case.grid, nodes.reference, "latent", threshold=1.0)
    overlay.GetDisplayNode().SetInterpolate(0)
    segmentation = add_brats_segmentation(headless.scene, case.label, case.grid, nodes.reference, "model")
    return headless, case, nodes, overlay, segmentation, activation


def _voxel_of_pixels(image, case) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel, the canonical voxel it shows and whether that is unambiguous.

    A pixel is unambiguous when its centre lies inside the volume and more than
    0.15 voxel away from a voxel boundary: nearest-neighbour reslicing can only
    show that voxel there.
    """
    rows, columns = np.meshgrid(np.arange(image.rgb.shape[0]), np.arange(image.rgb.shape[1]), indexing="ij")
    y = image.rgb.shape[0] - 1 - rows
    xy = np.stack([columns.ravel(), y.ravel(), np.zeros(rows.size), np.ones(rows.size)])
    continuous = (np.linalg.inv(case.grid.affine) @ image.xy_to_ras @ xy)[:3].T
    ijk = np.round(continuous).astype(int)
    clear = np.all(np.abs(continuous - ijk) < 0.35, axis=1)
    clear &= np.all((ijk >= 0) & (ijk < np.array(case.grid.shape)), axis=1)
    ijk[~clear] = 0
    return ijk.reshape(rows.shape + (3,)), clear.reshape(rows.shape)


def _mask_at_pixels(mask: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    return mask[tuple(np.moveaxis(voxels, -1, 0))]


def _changed(a, b) -> np.ndarray:
    return np.any(a.rgb != b.rgb, axis=-1)


@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal"])
def test_overlay_colour_appears_where_the_map_is_hot_and_nowhere_else(scene_with_overlay, orientation):
    headless, case, nodes, overlay, _, activation = scene_with_overlay
    position = (case.grid.affine @ np.append(HOT_CENTRE, 1.0))[:3]
    plain = render_slice(headless.scene, nodes.reference, orientation=orientation, position=position, size=SIZE)
    shown = render_slice(
        headless.scene, nodes.reference, overlay, orientation=orientation, position=position, size=SIZE
    )
    voxels, clear = _voxel_of_pixels(shown, case)
    hot = _mask_at_pixels(activation > 1.0, voxels)
    changed = _changed(plain, shown)
    assert (clear & hot).sum() > 100 and (clear & ~hot).sum() > 1000
    np.testing.assert_array_equal(changed[clear], hot[clear])
    tinted = shown.rgb[clear & hot].astype(int)
    assert np.all(tinted[:, 2] > tinted[:, 0] + 40)  # Cool1 is blue/cyan over grey MRI
    row, column = shown.ras_to_pixel(position)
    assert hot[row, column] and changed[row, column]


@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal"])
def test_segmentation_colours_appear_where_the_labels_are(scene_with_overlay, orientation):
    headless, case, nodes, _, segmentation, _ = scene_with_overlay
    centre = np.argwhere(case.label == 1).mean(axis=0).round()
    position = (case.grid.affine @ np.append(centre, 1.0))[:3]
    plain = render_slice(headless.scene, nodes.reference, orientation=orientation, position=position, size=SIZE)
    shown = render_slice(
        headless.scene,
        nodes.reference,
        segmentation=segmentation,
        orientation=orientation,
        position=position,
        size=SIZE,
        segmentation_opacity=1.0,
    )
    voxels, clear = _voxel_of_pixels(shown, case)
    labels = _mask_at_pixels(case.label, voxels)
    for region in BRATS_REGIONS:
        inside = clear & (labels == region.value)
        assert inside.sum() > 20, region.name
        assert np.all(shown.rgb[inside] == np.array(region.color, np.uint8)), region.name
    outside = clear & (labels == 0)
    assert outside.sum() > 1000
    assert not _changed(plain, shown)[outside].any()


def test_png_is_written_and_matches_the_returned_pixels(scene_with_overlay, tmp_path):
    import matplotlib.image

    headless, case, nodes, overlay, segmentation, _ = scene_with_overlay
    path = tmp_path / "view.png"
    image = render_slice(headless.scene, nodes.reference, overlay, segmentation, "coronal", size=SIZE, path=path)
    on_disk = (matplotlib.image.imread(path)[..., :3] * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(on_disk, image.rgb)
    with pytest.raises(OutputError, match="already exists"):
        render_slice(headless.scene, nodes.reference, path=path)


def test_rendering_leaves_the_scene_as_it_was(scene_with_overlay):
    headless, case, nodes, overlay, segmentation, _ = scene_with_overlay
    scene = headless.scene
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    render_slice(scene, nodes.reference, overlay, segmentation, "sagittal", size=SIZE)
    assert {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())} == before


def test_three_views_side_by_side(scene_with_overlay, tmp_path):
    headless, case, nodes, overlay, segmentation, _ = scene_with_overlay
    strip = render_orthogonal(headless.scene, nodes.reference, overlay, segmentation, size=96, path=tmp_path / "s.png")
    assert strip.shape == (96, 3 * 96 + 8, 3)
    assert (tmp_path / "s.png").stat().st_size > 0
    with pytest.raises(ParameterError, match="orientation 'oblique'"):
        render_slice(headless.scene, nodes.reference, orientation="oblique")


def test_slice_views_are_pointed_at_the_mri_and_the_overlay(scene_with_overlay):
    import slicer

    from MedSegLensLib.scene import show_in_slice_views

    headless, case, nodes, overlay, _, _ = scene_with_overlay
    scene = headless.scene
    logics = []
    for name in ("Red", "Green"):  # two views, as Slicer's layout would create
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLScene(scene)
        logic.AddSliceNode(name)
        logics.append(logic)
    assert show_in_slice_views(scene, nodes.volumes["t1c"], overlay, foreground_opacity=0.7) == 2
    for logic in logics:
        composite = logic.GetSliceCompositeNode()
        assert composite.GetBackgroundVolumeID() == nodes.volumes["t1c"].GetID()
        assert composite.GetForegroundVolumeID() == overlay.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.7)
    show_in_slice_views(scene, foreground=nodes.volumes["t2f"])
    assert logics[0].GetSliceCompositeNode().GetBackgroundVolumeID() == nodes.volumes["t1c"].GetID()
    assert logics[0].GetSliceCompositeNode().GetForegroundVolumeID() == nodes.volumes["t2f"].GetID()
