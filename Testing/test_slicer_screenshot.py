"""The committed README screenshot shows what it claims: MRI, a latent overlay and the segmentation, in three views.

It is made by `scripts/readme_screenshot.py` (Slicer's slice logic, headless);
how each layer is drawn is tested in test_scene_render.py / test_scene_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SCREENSHOT = Path(__file__).resolve().parents[1] / "Resources" / "Screenshots" / "medseglens-views.png"
SIZE, GAP = 320, 4  # the script's --size and render_orthogonal's gap
SEGMENT_COLOURS = {"NCR": (220, 50, 47), "ED": (60, 180, 75), "ET": (255, 225, 25)}  # Resources/ColorTables


@pytest.fixture(scope="module")
def panels() -> list[np.ndarray]:
    import matplotlib.image

    rgb = (matplotlib.image.imread(SCREENSHOT)[..., :3] * 255).round().astype(int)
    assert rgb.shape == (SIZE, 3 * SIZE + 2 * GAP, 3)
    return [rgb[:, i * (SIZE + GAP): i * (SIZE + GAP) + SIZE] for i in range(3)]


def test_each_view_shows_the_mri(panels):
    for panel in panels:
        grey = (panel[..., 0] == panel[..., 1]) & (panel[..., 1] == panel[..., 2]) & (panel[..., 0] > 0)
        assert grey.mean() > 0.2  # a brain, not an empty view
        assert np.percentile(panel[grey, 0], 95) - np.percentile(panel[grey, 0], 5) > 80  # with contrast


def test_each_view_shows_the_overlay_around_the_segment_outlines(panels):
    for panel in panels:
        overlay = panel[..., 2] > panel[..., 0] + 60  # the Cool colour map is blue
        assert overlay.sum() > 500
        rows, columns = np.nonzero(overlay)
        for name, colour in SEGMENT_COLOURS.items():
            outline = np.all(panel == colour, axis=-1)
            assert outline.sum() > 30, f"{name} outline missing"
            centre_row, centre_column = np.argwhere(outline).mean(axis=0)
            assert rows.min() <= centre_row <= rows.max() and columns.min() <= centre_column <= columns.max(), name
