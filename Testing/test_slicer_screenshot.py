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
    return [rgb[:, i * (SIZE + GAP) : i * (SIZE + GAP) + SIZE] for i in range(3)]


def test_each_view_shows_the_mri(panels):
    for panel in panels:
        grey = (panel[..., 0] == panel[..., 1]) & (panel[..., 1] == panel[..., 2]) & (panel[..., 0] > 0)
        assert grey.mean() > 0.2  # a brain, not an empty view
        assert np.percentile(panel[grey, 0], 95) - np.percentile(panel[grey, 0], 5) > 80  # with contrast


def classify(panel: np.ndarray) -> dict[str, np.ndarray]:
    """Each pixel as what a person sees: grey MRI, a segment outline, or the latent's heat colours over the MRI.

    The overlay is Slicer's fMRI red-to-yellow table (`latent_focus.HEAT_COLORMAP`) at 80 % opacity: red stays
    >= 204 above blue whatever the grey below; blue is only what the grey MRI adds (the old Cool map was blue).
    """
    grey = (panel[..., 0] == panel[..., 1]) & (panel[..., 1] == panel[..., 2])
    outline = np.zeros(grey.shape, bool)
    for colour in SEGMENT_COLOURS.values():
        outline |= np.all(panel == colour, axis=-1)
    heat = (panel[..., 0] >= panel[..., 2] + 150) & ~outline & ~grey
    return {"grey": grey, "outline": outline, "heat": heat}


def test_each_view_shows_the_heat_overlay_around_the_segment_outlines(panels):
    for panel in panels:
        heat = classify(panel)["heat"]
        assert heat.sum() > 500
        red, green = panel[..., 0], panel[..., 1]
        assert (heat & (green < 0.5 * red)).sum() > 100, "the red (low) end of the heat map"
        assert (heat & (green > 0.8 * red)).sum() > 50, "the yellow (high) end of the heat map"
        rows, columns = np.nonzero(heat)
        for name, colour in SEGMENT_COLOURS.items():
            outline = np.all(panel == colour, axis=-1)
            assert outline.sum() > 30, f"{name} outline missing"
            centre_row, centre_column = np.argwhere(outline).mean(axis=0)
            assert rows.min() <= centre_row <= rows.max() and columns.min() <= centre_column <= columns.max(), name


def test_the_mri_is_unchanged_where_the_latent_is_below_the_threshold(panels):
    """Every pixel is grey MRI, an outline or heat: no tint (and no blue) where the overlay is transparent."""
    for panel in panels:
        kinds = classify(panel)
        shown = kinds["grey"] | kinds["outline"] | kinds["heat"]
        assert shown.all(), np.unique(panel[~shown].reshape(-1, 3), axis=0)[:5]
        assert not (panel[..., 2] > panel[..., 0] + 30).any(), "blue: the old Cool colour map"
        assert kinds["grey"].mean() > 0.5, "the overlay is transparent below the threshold, not a wash over the view"
