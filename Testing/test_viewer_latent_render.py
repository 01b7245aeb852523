"""Offscreen render (no browser) of a latent map the worker computes on demand: the overlay's pixels lie
where the latent fires, on a case stored with a flipped voxel axis (trained tiny model and SAE)."""

from __future__ import annotations

import os

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np
import pytest
import torch

pytest.importorskip("trame_slicer")

from conftest import subprocess_env  # noqa: E402
from test_viewer_render import changed_pixels, grab, offscreen_display, ras_to_pixel, through  # noqa: E402
from viewer_steering_cases import write_steering_workspace  # noqa: E402

from MedSegLensLib.data import read_volume  # noqa: E402
from MedSegLensLib.data.geometry import to_canonical  # noqa: E402
from MedSegLensLib.viewer.workspace import read_workspace  # noqa: E402
from MedSegLensLib.worker import WorkerProcess  # noqa: E402

pytestmark = [pytest.mark.scene, pytest.mark.slow, pytest.mark.timeout(600)]
CASE = "planted-las"


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    """The workspace, the edema latent and its map as the worker's `latent_map` wrote it (read before release)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ws")
    _, edema = write_steering_workspace(root, tmp_path_factory.mktemp("assets"))
    workspace = read_workspace(root)
    model, sae = workspace.analysis()
    params = {
        "model": str(root / model.folder),
        "sae": str(root / sae.folder),
        "case": str(root / workspace.case(CASE).folder),
        "case_id": CASE,
        "latent": edema,
    }
    with WorkerProcess(env=subprocess_env(), threads=1) as worker:
        result = worker.run("latent_map", params, timeout=300)
        volume = read_volume(result["map"], kind="image")
        activation, grid = to_canonical(volume.array, volume.grid)
        copy = root / "map-copy.nii"
        copy.write_bytes(open(result["map"], "rb").read())
    return workspace, edema, result, activation, grid, copy


@pytest.fixture(scope="module")
def display(computed):
    return offscreen_display(computed[0])


def test_a_worker_map_is_drawn_where_the_latent_fires(computed, display):
    _, edema, result, activation, grid, copy = computed
    display.load_case(CASE)
    display.show_segmentation(None)
    name = f"latent-{edema}"
    display.add_map(name, copy, edema)
    display.show_overlay(name)  # the views jump to where it fires most; here they are sent through its peak
    through(display, result["peak_ras"])
    shown_at = {view.name: grab(view) for view in display.slice_views()}
    display.set_overlay_style(opacity=0.0)
    plain = {view.name: grab(view) for view in display.slice_views()}
    display.set_overlay_style(opacity=0.8)
    to_voxel = np.linalg.inv(grid.affine)
    for view in display.slice_views():
        shown = shown_at[view.name]
        hot = changed_pixels(plain[view.name], shown)
        assert hot.sum() > 20, f"{view.name}: the worker's map changed no pixels"
        x, y, _ = ras_to_pixel(view, result["peak_ras"])
        assert hot[int(round(y)) - 2 : int(round(y)) + 3, int(round(x)) - 2 : int(round(x)) + 3].any(), (
            f"{view.name}: nothing drawn at the latent's peak"
        )
        # Every drawn pixel lies on a voxel where the latent fires (the overlay starts at its threshold, the p50 of
        # the map's activations here; half of it leaves room for the smooth edges of the rendered map).
        xy_to_ras = view.get_view_node().GetXYToRAS()
        ys, xs = np.nonzero(hot)
        values = []
        for px, py in zip(xs, ys):
            ras = xy_to_ras.MultiplyPoint([float(px), float(py), 0.0, 1.0])
            i, j, k = np.clip(
                np.round(to_voxel @ np.array([*ras[:3], 1.0]))[:3].astype(int), 0, np.array(grid.shape) - 1
            )
            values.append(activation[i, j, k])
        firing = np.mean(np.array(values) >= 0.5 * display.legend()["threshold"])
        assert firing > 0.9, f"{view.name}: only {firing:.0%} of the overlay's pixels lie where the latent fires"
    assert display.has_map(name)
