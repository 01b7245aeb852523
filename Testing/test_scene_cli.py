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

pytestmark = pytest.mark.scene


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
    assert rgb.shape == (64, 3 * 64 + 8, 3)
    bluish = (rgb[..., 2] > rgb[..., 0] + 60).sum()
    green_outline = ((rgb[..., 1] == 180) & (rgb[..., 0] == 60)).sum()  # ED's colour
    assert bluish > 20 and green_outline > 10
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
