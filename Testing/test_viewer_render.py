"""Offscreen render tests (no browser): the viewer's slice views, rendered through trame-slicer's
own SliceView with EGL, show the MRI where it is, the overlay where the latent fires and the
segmentation where the tumour is, for a RAS-stored case and an LPS-stored one."""

from __future__ import annotations

import os

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("trame_slicer")

from viewer_support import CASES, SHAPE, ras_of, write_fixture_workspace  # noqa: E402

from MedSegLensLib.errors import MedSegLensError  # noqa: E402
from MedSegLensLib.viewer.display import CaseDisplay  # noqa: E402
from MedSegLensLib.viewer.workspace import read_workspace  # noqa: E402

pytestmark = pytest.mark.scene
VIEW_SIZE = (240, 200)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return read_workspace(write_fixture_workspace(tmp_path_factory.mktemp("workspace")).root)


def offscreen_display(workspace) -> CaseDisplay:
    """A CaseDisplay on trame-slicer's own three slice views, rendered offscreen at VIEW_SIZE."""
    from trame_slicer.core import SlicerApp
    from trame_slicer.views import DirectViewFactory, ViewLayoutDefinition

    app = SlicerApp()
    app.view_manager.register_factory(DirectViewFactory(do_render_offscreen=True))
    for definition in (
        ViewLayoutDefinition.axial_view(),
        ViewLayoutDefinition.coronal_view(),
        ViewLayoutDefinition.sagittal_view(),
    ):
        app.view_manager.create_view(definition).render_window().SetSize(*VIEW_SIZE)
    return CaseDisplay(app, workspace)


@pytest.fixture(scope="module")
def display(workspace):
    return offscreen_display(workspace)


def grab(view, render: bool = True) -> np.ndarray:
    """The view's pixels, rows from the bottom (VTK's order, same as slice XY); without `render`, the picture the
    view last drew (what the page shows)."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

    if render:
        view.render()
    capture = vtkWindowToImageFilter()
    capture.SetInput(view.render_window())
    capture.SetShouldRerender(render)
    capture.Update()
    image = capture.GetOutput()
    width, height, _ = image.GetDimensions()
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)[..., :3].astype(float)


def ras_to_pixel(view, ras) -> tuple[float, float, float]:
    """(x, y, distance to the slice plane) of a RAS point in the view."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    matrix = vtkMatrix4x4()
    matrix.DeepCopy(view.get_view_node().GetXYToRAS())
    matrix.Invert()
    return tuple(matrix.MultiplyPoint([*map(float, ras), 1.0])[:3])


def through(display, ras) -> None:
    """Move every view's slice through a RAS point."""
    for view in display.slice_views():
        view.get_view_node().JumpSliceByOffsetting(*map(float, ras))


def changed_pixels(before: np.ndarray, after: np.ndarray, level: float = 30.0) -> np.ndarray:
    return np.abs(after - before).sum(axis=-1) > level


def show(display, case_id, segmentation=None, overlay=None):
    if display.case is None or display.case.case_id != case_id:
        display.load_case(case_id)
    display.show_segmentation(segmentation)
    display.show_overlay(overlay)


@pytest.mark.parametrize("spec", CASES, ids=[c.case_id for c in CASES])
def test_slice_views_show_the_mri_where_it_is(display, workspace, spec):
    show(display, spec.case_id)
    image = nib.load(workspace.case_files(workspace.case(spec.case_id)).modalities["t1n"])
    data, to_voxel = np.asarray(image.dataobj, dtype=float), np.linalg.inv(image.affine)
    low, high = display.display_range()
    through(display, ras_of((15, 18, 15)))  # a voxel on the sampled lattice below
    for view in display.slice_views():
        pixels = grab(view)
        assert np.ptp(pixels[..., 0]) > 100, f"{view.name}: blank view"
        assert np.allclose(pixels[..., 0], pixels[..., 2], atol=2), f"{view.name}: MRI alone should be grey"
        expected, observed = [], []
        for voxel in np.ndindex(*SHAPE):
            if any(v % 3 for v in voxel):
                continue
            ras = ras_of(voxel)
            x, y, depth = ras_to_pixel(view, ras)
            if abs(depth) > 0.5 or not (2 <= x < VIEW_SIZE[0] - 2 and 2 <= y < VIEW_SIZE[1] - 2):
                continue
            i, j, k = np.round(to_voxel @ np.array([*ras, 1.0]))[:3].astype(int)
            expected.append(np.clip((data[i, j, k] - low) / (high - low), 0, 1) * 255)
            observed.append(pixels[int(round(y)), int(round(x)), 0])
        expected, observed = np.array(expected), np.array(observed)
        assert len(expected) > 30, f"{view.name}: too few voxels on the slice ({len(expected)})"
        assert np.corrcoef(expected, observed)[0, 1] > 0.95, f"{view.name}: pixels do not follow the MRI"
        assert np.median(np.abs(expected - observed)) < 12, f"{view.name}: window/level not applied"


@pytest.mark.parametrize("spec", CASES, ids=[c.case_id for c in CASES])
def test_overlay_pixels_are_where_the_latent_fires(display, spec):
    name, blob = "latent-7", spec.blobs["latent-7"]
    show(display, spec.case_id)
    through(display, ras_of(blob))
    plain = {view.name: grab(view) for view in display.slice_views()}
    display.show_overlay(name)
    for view in display.slice_views():
        with_overlay = grab(view)
        hot = changed_pixels(plain[view.name], with_overlay)
        assert hot.sum() > 20, f"{view.name}: the overlay changed no pixels"
        ys, xs = np.nonzero(hot)
        x, y, _ = ras_to_pixel(view, ras_of(blob))
        pixel_mm = view.get_view_node().GetFieldOfView()[0] / VIEW_SIZE[0]
        assert abs(xs.mean() - x) * pixel_mm < 3.0 and abs(ys.mean() - y) * pixel_mm < 3.0, (
            f"{view.name}: overlay centred at ({xs.mean():.0f}, {ys.mean():.0f}), latent fires at ({x:.0f}, {y:.0f})"
        )
        radius_mm = np.hypot(xs - x, ys - y).max() * pixel_mm
        assert radius_mm < 16.0, f"{view.name}: overlay pixels {radius_mm:.1f} mm from where the latent fires"
        colour = with_overlay[hot]
        assert np.mean(colour[:, 0] - colour[:, 2]) > 40, f"{view.name}: overlay is not drawn in the heat colour map"


def test_overlay_threshold_and_opacity_shrink_and_fade_it(display):
    spec = CASES[0]
    show(display, spec.case_id)
    through(display, ras_of(spec.blobs["latent-7"]))
    view = display.slice_views()[0]
    plain = grab(view)
    display.show_overlay("latent-7")
    display.set_overlay_style(threshold=1.25, opacity=0.8)  # activation units: the blob peaks at 5
    wide = changed_pixels(plain, grab(view)).sum()
    display.set_overlay_style(threshold=3.75)
    narrow = changed_pixels(plain, grab(view)).sum()
    display.set_overlay_style(threshold=1.25, opacity=0.0)
    invisible = changed_pixels(plain, grab(view)).sum()
    assert 0 < narrow < wide
    assert invisible == 0


def test_selecting_a_latent_jumps_to_it_and_leaves_pixels_below_its_threshold_untouched(display):
    """The views move through the blob's centre from elsewhere; the legend is in activation units (percentiles
    of the map's positive values); a pixel on a voxel well below the threshold is not coloured."""
    spec = CASES[1]  # the LPS-stored case
    show(display, spec.case_id)
    display.show_segmentation(None)
    display.set_overlay_style(opacity=0.8)
    through(display, ras_of(spec.tumour_voxel))
    display.show_overlay("latent-12")  # another latent first: selecting latent-7 must move the slices again
    display.show_overlay(None)
    display.show_overlay("latent-7")
    legend = display.legend()
    blob = display._maps["latent-7"]
    positive = blob[blob > 0.01 * blob.max()]
    assert legend["low"] == pytest.approx(np.percentile(positive, 50), rel=1e-3)
    assert legend["high"] == pytest.approx(np.percentile(positive, 99), rel=1e-3)
    assert legend["threshold"] == legend["low"] and legend["peak"] == pytest.approx(5.0, rel=1e-3)
    centre = ras_of(spec.blobs["latent-7"])
    for view in display.slice_views():
        assert abs(ras_to_pixel(view, centre)[2]) < 1.3, f"{view.name}: the slice did not move to the blob"
    shown = {view.name: grab(view) for view in display.slice_views()}
    display.set_overlay_style(opacity=0.0)
    plain_at = {view.name: grab(view) for view in display.slice_views()}
    display.set_overlay_style(opacity=0.8)
    grid = display.data.grid
    to_voxel = np.linalg.inv(grid.affine)
    for view in display.slice_views():
        hot = changed_pixels(plain_at[view.name], shown[view.name])
        assert hot.sum() > 20, f"{view.name}: the overlay changed no pixels"
        xy_to_ras = view.get_view_node().GetXYToRAS()
        below = 0
        for y, x in zip(*np.nonzero(np.ones(hot.shape, bool)[::4, ::4])):
            y, x = 4 * y, 4 * x
            ras = xy_to_ras.MultiplyPoint([float(x), float(y), 0.0, 1.0])[:3]
            voxel = np.round(to_voxel @ np.array([*ras, 1.0]))[:3].astype(int)
            if np.any(voxel < 0) or np.any(voxel >= np.array(grid.shape)):
                continue
            if blob[tuple(voxel)] < 0.5 * legend["threshold"]:
                below += 1
                assert not hot[y, x], f"{view.name}: pixel ({x}, {y}) is coloured where the latent is below threshold"
        assert below > 100, f"{view.name}: too few pixels below the threshold were checked ({below})"


def test_segmentation_is_drawn_at_the_tumour_and_follows_the_source(display):
    spec = CASES[0]
    show(display, spec.case_id)
    through(display, ras_of(spec.tumour_voxel))
    for view in display.slice_views():
        plain = grab(view)
        display.show_segmentation("reference")
        reference = changed_pixels(plain, grab(view))
        display.show_segmentation("prediction")
        prediction = changed_pixels(plain, grab(view))
        display.show_segmentation(None)
        x, y, _ = ras_to_pixel(view, ras_of(spec.tumour_voxel))
        ys, xs = np.nonzero(reference)
        pixel_mm = view.get_view_node().GetFieldOfView()[0] / VIEW_SIZE[0]
        assert reference.sum() > 50, f"{view.name}: no segmentation drawn"
        assert abs(xs.mean() - x) * pixel_mm < 3.0 and abs(ys.mean() - y) * pixel_mm < 3.0, (
            f"{view.name}: segmentation off the tumour"
        )
        assert 0 < prediction.sum() < reference.sum(), f"{view.name}: the smaller prediction should cover fewer pixels"


def test_window_level_and_slice_scrolling_change_the_frame(display):
    spec = CASES[0]
    show(display, spec.case_id)
    view = display.slice_views()[0]
    through(display, ras_of(np.array(SHAPE) // 2))
    low, high = display.intensity_range()
    display.set_display_range(low, high)
    normal = grab(view)
    display.set_display_range(low, low + 0.3 * (high - low))
    bright = grab(view)
    assert bright.mean() > normal.mean() + 20
    display.set_display_range(low, high)
    first, last = view.get_slice_range()
    view.set_slice_value(first + 0.25 * (last - first))
    lower = grab(view)
    view.set_slice_value(first + 0.5 * (last - first))
    middle = grab(view)
    assert changed_pixels(lower, middle).sum() > 100


def test_modalities_differ_and_unknown_ones_are_refused(display):
    spec = CASES[0]
    show(display, spec.case_id)
    through(display, ras_of(spec.tumour_voxel))
    view = display.slice_views()[0]
    display.show_modality("t1n")
    t1 = grab(view)
    display.show_modality("t1c")
    display.set_display_range(*display.intensity_range())
    t1c = grab(view)
    display.show_modality("t1n")
    assert changed_pixels(t1, t1c).sum() > 50
    with pytest.raises(MedSegLensError, match="modality"):
        display.show_modality("../t1n")


def _scene_size(display) -> tuple[int, int]:
    from slicer import vtkMRMLSubjectHierarchyNode

    hierarchy = vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(display.scene)
    return display.scene.GetNumberOfNodes(), hierarchy.GetNumberOfItems()


def test_switching_cases_does_not_leak_nodes(display):
    display.load_case(CASES[0].case_id)
    display.show_overlay("latent-7")
    size = _scene_size(display)
    display.load_case(CASES[1].case_id)
    display.show_overlay("latent-12")
    display.show_overlay("latent-7")
    display.load_case(CASES[0].case_id)
    display.show_overlay("latent-7")
    assert _scene_size(display) == size


def test_a_broken_case_leaves_the_shown_case_on_screen(display, workspace, tmp_path):
    display.load_case(CASES[0].case_id)
    before = _scene_size(display)
    broken = workspace.case_files(workspace.case(CASES[1].case_id)).modalities["t2w"]
    original = open(broken, "rb").read()
    try:
        with open(broken, "wb") as handle:
            handle.write(original[: len(original) // 3])
        with pytest.raises(MedSegLensError, match="t2w"):
            display.load_case(CASES[1].case_id)
    finally:
        with open(broken, "wb") as handle:
            handle.write(original)
    assert display.case.case_id == CASES[0].case_id
    assert _scene_size(display) == before
    assert grab(display.slice_views()[0]).std() > 10
