"""`medseglens render` as a real subprocess: PNG out, one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("slicer")

from conftest import subprocess_env  # noqa: E402
from scene_cases import ras_of_voxels, write_case  # noqa: E402

from MedSegLensLib.data import read_volume, write_volume  # noqa: E402
from MedSegLensLib.latent_focus import latent_focus  # noqa: E402

pytestmark = pytest.mark.scene
LEGEND_ROWS = 28  # scene.legend_strip's default height


def medseglens(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "MedSegLensLib", *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_render_writes_three_views_with_overlay_and_segmentation(tmp_path):
    import matplotlib.image

    folder = write_case(tmp_path, "flipped")
    t1n = read_volume(next(folder.glob("*-t1n.nii.gz")))
    ras = ras_of_voxels(t1n.grid.shape, t1n.grid.affine)
    activation = np.exp(-np.sum((ras - np.array([-6.0, 7.0, 20.0])) ** 2, axis=-1) / 20.0).astype(np.float32)
    write_volume(activation, t1n.grid, tmp_path / "map.nii.gz")
    out = tmp_path / "views.png"
    result = medseglens(
        "render", "--case", str(folder), "--map", str(tmp_path / "map.nii.gz"), "--out", str(out), "--size", "64"
    )
    assert result.returncode == 0, result.stderr
    assert "through RAS -6.0, 7.0, 20.0 mm" in result.stdout  # the map's peak
    rgb = (matplotlib.image.imread(out)[..., :3] * 255).round().astype(int)
    assert rgb.shape == (64 + LEGEND_ROWS, 3 * 64 + 8, 3)  # the views, then the legend row
    heat = (rgb[:64, :, 0] > rgb[:64, :, 2] + 100).sum()  # red to yellow over grey MRI, no blue
    green_outline = ((rgb[..., 1] == 180) & (rgb[..., 0] == 60)).sum()  # ED's colour
    assert heat > 20 and green_outline > 10
    bare = tmp_path / "bare.png"
    result = medseglens(
        "render", "--case", str(folder), "--out", str(bare), "--view", "axial", "--no-segmentation", "--size", "64"
    )
    assert result.returncode == 0, result.stderr
    rgb = (matplotlib.image.imread(bare)[..., :3] * 255).round().astype(int)
    assert rgb.shape == (64, 64, 3) and np.all(rgb[..., 0] == rgb[..., 2])  # grey MRI only
    again = medseglens("render", "--case", str(folder), "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_render_reports_a_missing_case_in_one_line(tmp_path):
    result = medseglens("render", "--case", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.png"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("medseglens render: error:")
    assert "case folder not found" in result.stderr and "Traceback" not in result.stderr


def _grey_levels(folder, ras) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Write a T1c that marks two blocks by its own grey level; returns (high block, low block, T1c)."""
    high = (ras[..., 0] > 2.0) & (np.abs(ras[..., 2]) < 8.0)
    low = (ras[..., 0] < -7.0) & (np.abs(ras[..., 2]) < 8.0)  # smaller: p50 lies in the high block
    t1c = np.full(ras.shape[:-1], 100.0, np.float32)
    t1c[high], t1c[low] = 300.0, 200.0
    return high, low, t1c


def test_render_draws_a_planted_map_in_heat_colours_above_its_threshold_only_with_a_legend(tmp_path):
    """Pixels change where the map is above the threshold and nowhere below it; the legend states the range."""
    from PIL import Image

    folder = write_case(tmp_path, "ras")
    t1c_file = next(folder.glob("*-t1c.nii.gz"))
    grid = read_volume(t1c_file).grid
    ras = ras_of_voxels(grid.shape, grid.affine)
    high, low, t1c = _grey_levels(folder, ras)
    write_volume(t1c, grid, t1c_file)
    activation = np.zeros(grid.shape, np.float32)
    activation[high] = 2.5 + 0.1 * (ras[high][:, 2] + 8.0)  # 2.5..4.1, rising to the top
    activation[low] = 0.5  # fires, but below the threshold
    write_volume(activation, grid, tmp_path / "map.nii.gz")
    common = [
        "--case",
        str(folder),
        "--view",
        "axial",
        "--no-segmentation",
        "--size",
        "96",
        "--position",
        "0",
        "0",
        "0",
    ]
    bare, shown = tmp_path / "bare.png", tmp_path / "shown.png"
    assert medseglens("render", *common, "--out", str(bare)).returncode == 0
    result = medseglens(
        "render",
        *common,
        "--map",
        str(tmp_path / "map.nii.gz"),
        "--threshold",
        "2",
        "--latent",
        "7",
        "--out",
        str(shown),
    )
    assert result.returncode == 0, result.stderr
    plain = np.asarray(Image.open(bare).convert("RGB")).astype(int)
    image = Image.open(shown)
    views = np.asarray(image.convert("RGB")).astype(int)
    assert views.shape == (96 + LEGEND_ROWS, 96, 3)
    grey = plain[..., 0]
    values, counts = np.unique(grey[grey > 0], return_counts=True)
    low_level, high_level = np.sort(values[np.argsort(counts)[-2:]])  # the blocks' plateaus (the rest is black)
    in_high, in_low = grey == high_level, grey == low_level  # pixels inside a block, away from its interpolated edge
    assert in_high.sum() > 200 and in_low.sum() > 100
    changed = np.any(views[:96] != plain, axis=-1)
    assert changed[in_high].all() and not changed[in_low].any()
    red, blue = views[:96][..., 0], views[:96][..., 2]
    assert np.all(red[in_high] > blue[in_high] + 100)  # heat colours (red..yellow) over grey
    focus = latent_focus(activation)
    legend = image.text["Legend"]
    assert legend.startswith(f"latent 7 · {focus.low:.3g}–{focus.high:.3g} (peak {focus.peak:.3g})")
    assert f"legend: {legend}" in result.stdout and legend.endswith("transparent below 2")
    row = views[96:]
    assert (row[..., 0] > 200).any() and ((row[..., 0] > 200) & (row[..., 1] > 200) & (row[..., 2] < 60)).any()
    default = medseglens("render", *common, "--map", str(tmp_path / "map.nii.gz"), "--out", str(tmp_path / "d.png"))
    assert default.returncode == 0 and f"transparent below {focus.low:.3g}" in default.stdout  # p50 by default
