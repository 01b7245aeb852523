"""The one rule the viewer and the Slicer module share for a selected latent (`MedSegLensLib.latent_focus`):
the colour range from the latent's own distribution here, and where the slices go. No GUI, no scene."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from MedSegLensLib.latent_focus import FLOOR_SHARE, latent_focus
from MedSegLensLib.slicer_module.overlay import LatentOverlay


def _ball(shape, centre, radius, value):
    index = np.indices(shape)
    inside = sum((index[a] - centre[a]) ** 2 for a in range(3)) <= radius**2
    return np.where(inside, value, 0.0).astype(np.float32)


def test_the_colour_range_is_percentiles_of_where_it_fires_not_a_fraction_of_the_peak():
    values = np.zeros((20, 20, 20), np.float32)
    values[:10] = np.linspace(1.0, 2.0, 10 * 20 * 20).reshape(10, 20, 20)
    values[19, 19, 19] = 100.0  # one hot voxel: a fraction of the peak would hide everything else
    values[15, 0, 0] = 0.5 * FLOOR_SHARE * 100.0  # below the floor: does not count as firing
    focus = latent_focus(values)
    firing = values[(values > FLOOR_SHARE * 100.0)]
    assert focus.low == pytest.approx(np.percentile(firing, 50))
    assert focus.high == pytest.approx(np.percentile(firing, 99))
    assert 1.4 < focus.low < 1.6 and focus.high < 2.0 < focus.peak == 100.0
    assert focus.active_voxels == firing.size and focus.peak_voxel == (19, 19, 19)
    legend = focus.legend()
    assert legend["threshold"] == legend["low"] and legend["low_percentile"] == 50 and legend["high_percentile"] == 99


def test_the_slices_go_through_a_voxel_where_it_fires_most_even_with_two_separate_hot_spots():
    shape = (40, 30, 30)
    values = _ball(shape, (8, 15, 15), 4, 3.0) + _ball(shape, (31, 15, 15), 4, 3.0) + _ball(shape, (20, 5, 5), 6, 1.0)
    focus = latent_focus(values)
    assert values[focus.focus_voxel] == 3.0, "the centroid of two hot spots lies between them; the focus must not"
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-40.0, -30.0, -30.0)
    assert focus.focus_ras(affine) == tuple(float(v) for v in (affine @ np.array([*focus.focus_voxel, 1.0]))[:3])


def test_a_latent_that_never_fires_has_no_focus_and_the_mask_limits_what_counts():
    empty = latent_focus(np.zeros((4, 4, 4), np.float32))
    assert empty.focus_voxel is None and empty.focus_ras(np.eye(4)) is None and empty.active_voxels == 0
    values = _ball((20, 20, 20), (5, 5, 5), 3, 2.0) + _ball((20, 20, 20), (15, 15, 15), 3, 4.0)
    mask = np.zeros(values.shape, bool)
    mask[:10] = True
    inside = latent_focus(values, mask)
    assert inside.peak == 2.0 and values[inside.focus_voxel] == 2.0 and inside.voxels == mask.sum()
    with pytest.raises(ValueError, match="mask shape"):
        latent_focus(values, mask[:5])


class _Display:
    def __init__(self):
        self.window = None

    def SetWindowLevelMinMax(self, low, high):  # noqa: N802 (VTK's name)
        self.window = (low, high)


class _Node:
    def __init__(self, scene):
        self.scene, self.display = scene, _Display()

    def GetScene(self):  # noqa: N802
        return self.scene

    def GetDisplayNode(self):  # noqa: N802
        return self.display


class _SliceNode:
    def __init__(self):
        self.jumps = []

    def JumpSliceByOffsetting(self, r, a, s):  # noqa: N802
        self.jumps.append((r, a, s))


class _Scene:
    def __init__(self):
        self.slices = [_SliceNode() for _ in range(3)]

    def GetNumberOfNodesByClass(self, name):  # noqa: N802
        return len(self.slices) if name == "vtkMRMLSliceNode" else 0

    def GetNthNodeByClass(self, index, name):  # noqa: N802
        return self.slices[index]


def test_the_slicer_overlay_uses_the_same_rule():
    scene = _Scene()
    api = SimpleNamespace(
        add_latent_overlay=lambda scene, *a, **k: _Node(scene),
        update_latent_overlay=lambda *a, **k: None,
        set_overlay_threshold=lambda *a, **k: None,
        remove_node=lambda *a, **k: None,
    )
    overlay = LatentOverlay(scene, api, reference_node=None, case_name="c")
    values = _ball((20, 20, 20), (12, 6, 9), 3, 2.0)
    grid = SimpleNamespace(affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    node = overlay.show(values, grid, latent=4)
    focus = latent_focus(values)
    assert node.display.window == focus.window(), "colours span the latent's own p50..p99 here"
    assert all(s.jumps == [focus.focus_ras(grid.affine)] for s in scene.slices), "the slice views moved to it"
    assert overlay.threshold == focus.low, "transparent below the range's lower end, in activation units"
    overlay.set_threshold(0.8 * focus.peak)
    overlay.show(values, grid, latent=4)  # the same latent again (e.g. a new map): the views stay where they are
    assert all(len(s.jumps) == 1 for s in scene.slices) and overlay.threshold == 0.8 * focus.peak
