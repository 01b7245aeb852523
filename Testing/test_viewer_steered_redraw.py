"""Steering results redraw the "steered" segmentation in place and only the slice views their change crosses
(docs/viewer.md, issue 19): what every view shows must still be exactly the steered labels, for a view the
change skipped, after a later steer that crosses it, and after switching case."""

from __future__ import annotations

import os

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np
import pytest

pytest.importorskip("trame_slicer")

from test_viewer_render import grab, offscreen_display, through  # noqa: E402
from viewer_support import CASES, canonical_grid, ras_of  # noqa: E402

from MedSegLensLib.data import write_volume  # noqa: E402
from MedSegLensLib.viewer.display import changed_box, view_name  # noqa: E402

pytestmark = pytest.mark.scene
VIEWS = {"axial", "coronal", "sagittal"}


@pytest.fixture
def display(workspace):
    return offscreen_display(workspace)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from viewer_support import write_fixture_workspace

    from MedSegLensLib.viewer.workspace import read_workspace

    return read_workspace(write_fixture_workspace(tmp_path_factory.mktemp("workspace")).root)


def painted(labels: np.ndarray, box: tuple, value: int) -> np.ndarray:
    """`labels` with the canonical voxels of `box` (slices) set to `value`."""
    out = labels.copy()
    out[box] = value
    return out


class Renders:
    """Counts each view's renders (trame-slicer draws, encodes and sends a frame per render)."""

    def __init__(self, display):
        from vtkmodules.vtkCommonCore import vtkCommand

        self.counts = dict.fromkeys(VIEWS, 0)
        for view in display.slice_views():
            name = view_name(view)
            view.render_window().AddObserver(vtkCommand.EndEvent, lambda *_, n=name: self._count(n))

    def _count(self, name: str) -> None:
        self.counts[name] += 1

    def since(self, before: dict) -> set[str]:
        return {name for name in VIEWS if self.counts[name] > before[name]}


def steer(display, labels: np.ndarray, path) -> tuple[list[str], dict]:
    """Show `labels` as a steering result; returns the views it redrew and what each view then shows."""
    write_volume(labels, canonical_grid(), path, dtype=np.uint8)
    redrawn = display.set_segmentation("steered", path, {"job": "steer"})
    return redrawn, {view_name(view): grab(view, render=False) for view in display.slice_views()}


def assert_shows_exactly(display, labels: np.ndarray, shown: dict, path) -> None:
    """Every view's picture equals the same labels freshly imported as a new node and drawn, and the shown node
    holds exactly `labels`."""
    from MedSegLensLib.scene import segmentation_to_labels

    np.testing.assert_array_equal(segmentation_to_labels(display.segmentation_node(), display.data.grid), labels)
    write_volume(labels, canonical_grid(), path, dtype=np.uint8)
    display.set_segmentation("prediction", path, {})  # a new node with the same labels, shown instead
    for view in display.slice_views():
        fresh = grab(view)
        stale = np.abs(fresh - shown[view_name(view)]).sum(axis=-1) > 0
        assert not stale.any(), f"{view_name(view)}: {stale.sum()} pixels differ from the steered labels"
    display.show_segmentation("steered")


def test_a_steer_redraws_only_the_views_it_crosses_and_every_view_shows_the_steered_labels(display, tmp_path):
    spec = CASES[0]
    display.load_case(spec.case_id)
    tumour = spec.tumour_voxel
    through(display, ras_of(tumour))
    renders = Renders(display)
    base = np.asarray(display.data.label)  # the reference labels, canonical, as the first steered result
    redrawn, shown = steer(display, base, tmp_path / "first.nii")
    assert set(redrawn) == VIEWS and redrawn[0] == "axial"  # a new "steered" node: every view, the axial first
    assert_shows_exactly(display, base, shown, tmp_path / "check.nii")
    node = display.segmentation_node()

    # a change away from the axial slice (k = tumour's) but crossing the coronal and sagittal planes
    below = painted(base, np.s_[tumour[0] - 2 : tumour[0] + 3, tumour[1] - 2 : tumour[1] + 3, 2:5], 2)
    before = dict(renders.counts)
    previous = shown
    redrawn, shown = steer(display, below, tmp_path / "below.nii")
    assert renders.since(before) == set(redrawn) == {"coronal", "sagittal"}
    assert display.segmentation_node() is node  # redrawn in place
    assert (np.abs(shown["coronal"] - previous["coronal"]).sum(axis=-1) > 30).sum() > 5  # the change shows
    assert_shows_exactly(display, below, shown, tmp_path / "check.nii")

    # a later steer whose change crosses the axial slice (and not the sagittal one)
    crossing = painted(below, np.s_[tumour[0] + 6 : tumour[0] + 9, tumour[1] - 3 : tumour[1] + 3, tumour[2]], 3)
    before = dict(renders.counts)
    redrawn, shown = steer(display, crossing, tmp_path / "crossing.nii")
    assert renders.since(before) == set(redrawn) == {"axial", "coronal"} and redrawn[0] == "axial"
    assert_shows_exactly(display, crossing, shown, tmp_path / "check.nii")

    # the axial slice moved to where the first change is: it shows it
    through(display, ras_of((tumour[0], tumour[1], 3)))
    shown = {view_name(view): grab(view, render=False) for view in display.slice_views()}
    assert_shows_exactly(display, crossing, shown, tmp_path / "check.nii")

    # the same labels again: nothing to redraw
    before = dict(renders.counts)
    redrawn, _ = steer(display, crossing, tmp_path / "same.nii")
    assert redrawn == [] and renders.since(before) == set()

    # another case (stored in LPS order): a new node, every view redrawn, no picture of the first case's labels
    other = CASES[1]
    display.load_case(other.case_id)
    through(display, ras_of(other.tumour_voxel))
    labels = painted(np.asarray(display.data.label), np.s_[2:6, 2:6, 2:6], 3)
    redrawn, shown = steer(display, labels, tmp_path / "other.nii")
    assert set(redrawn) == VIEWS and display.segmentation_node() is not node
    assert_shows_exactly(display, labels, shown, tmp_path / "check.nii")


def test_the_changed_box_spans_exactly_the_changed_voxels():
    before = np.zeros((6, 7, 8), np.uint8)
    assert changed_box(before, before.copy()) is None
    after = painted(painted(before, np.s_[1, 2, 3], 2), np.s_[4, 5, 6], 1)
    low, high = changed_box(before, after)
    assert low.tolist() == [1, 2, 3] and high.tolist() == [4, 5, 6]
    low, high = changed_box(None, after)
    assert low.tolist() == [0, 0, 0] and high.tolist() == [5, 6, 7]
