"""A latent overlay you cannot miss, on a brain-sized case: real headless Chromium against `medseglens serve`.

The workspace holds one synthetic adult brain at 2 mm (88 x 104 x 88 voxels, `medseglens synth`'s generator)
and a planted latent map (`viewer_support.write_brain_workspace`): it fires over the left hemisphere
(strongest at its centre) and weakly, always below its default threshold, in a ball of the right hemisphere.
Selecting the latent moves the three slices to where it fires most, colours it with the heat map over its own
p50..p99 here (legend in activation units), and must change at least 5 % of the head's pixels in at least two
views while the right hemisphere's pixels (where the latent is below the threshold) stay as they were.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import ROOT, WAIT_S, subprocess_env
from test_viewer_browser import _ensure_chromium
from viewer_support import BRAIN_OVERLAY, write_brain_workspace

from MedSegLensLib.latent_focus import latent_focus, legend_text
from MedSegLensLib.viewer import browser

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]
ARTIFACTS = ROOT / "Testing" / "artifacts"
WAIT_MS = WAIT_S * 1000
QUIET_MS = 800
MIN_SHARE = 0.05  # of the head's pixels in a view
ROW = f"#overlay-{BRAIN_OVERLAY}"
README_SCREENSHOT = ROOT / "Resources" / "Screenshots" / "viewer.png"
README_MAX_BYTES = 400_000


def _small_png(source, target) -> None:
    """The screenshot at 1280 pixels wide in 256 colours (the README keeps it under README_MAX_BYTES)."""
    from PIL import Image

    image = Image.open(source).convert("RGB")
    image = image.resize((1280, round(image.height * 1280 / image.width)), Image.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(target, optimize=True)
    assert target.stat().st_size < README_MAX_BYTES, f"{target} is {target.stat().st_size} bytes"


@pytest.fixture(scope="module")
def brain(tmp_path_factory):
    pytest.importorskip("playwright")
    _ensure_chromium()
    return write_brain_workspace(tmp_path_factory.mktemp("brain-ws"))


@pytest.fixture(scope="module")
def page(brain):
    from playwright.sync_api import sync_playwright

    with (
        browser.viewer_server(brain.workspace.root, env=subprocess_env()) as server,
        sync_playwright() as playwright,
        browser.chromium(playwright, viewport=(1600, 900)) as page,
    ):
        page.goto(server.url)
        browser.wait_for_frames(page, timeout_ms=WAIT_MS)
        page.wait_for_selector(ROW, timeout=WAIT_MS)
        page.click("#seg-none")  # MRI only: every changed pixel below is the overlay's
        page.wait_for_selector("#seg-none.v-btn--active", timeout=WAIT_MS)
        yield page


def _settled(page) -> dict[str, np.ndarray]:
    return {name: browser.steady_pixels(page, name, WAIT_S) for name in browser.VIEWS}


def test_a_selected_latent_is_shown_where_it_fires_and_nowhere_below_its_threshold(page, brain):
    focus = latent_focus(brain.activation)
    # the planted latent fires in >= 10 % of the head (its positive part) and its right-hemisphere ball lies below
    # the default threshold (the p50 of its positive activations here)
    assert (brain.activation[brain.brain] > 0).mean() >= 0.10
    weak = (brain.activation > 0) & (brain.activation < 1.0)
    assert weak.sum() > 1000 and brain.activation[weak].max() < focus.low

    before = _settled(page)
    page.click(ROW)
    page.wait_for_selector("#overlay-legend", timeout=WAIT_MS)
    shown = _settled(page)
    # legend in activation units: the colour map's ends are the map's own percentiles here
    assert float(page.inner_text("#legend-low")) == pytest.approx(focus.low, rel=1e-3)
    assert float(page.inner_text("#legend-high")) == pytest.approx(focus.high, rel=1e-3)
    threshold = float(page.inner_text("#threshold-text").split()[1])  # "Threshold 2.97 (transparent below) ..."
    assert threshold == pytest.approx(focus.low, rel=5e-3), "the threshold starts at the colour range's start"
    ras = [round(float(v), 1) for v in focus.focus_ras(brain.affine)]
    latent = brain.workspace.cases[0].overlays[0].latent
    # the legend's line is the shared rule's (the Slicer module writes its legend with the same function)
    assert page.inner_text("#legend-text") == legend_text({**focus.legend(), "latent": latent, "focus_ras": ras})
    assert ras[0] < brain.midline_x - 10, "the focus lies in the left hemisphere, where the latent is strongest"
    assert f"Latent {brain.workspace.cases[0].overlays[0].latent} · test: hemisphere" in page.inner_text(
        "#latent-details"
    )
    page.click(ROW)  # hide it again: the slices stay where the selection moved them
    page.wait_for_selector("#overlay-legend", state="detached", timeout=WAIT_MS)
    plain = _settled(page)
    browser.save_screenshot(page, ARTIFACTS / "viewer-brain-plain.png")

    # the slices moved: the sagittal view left the midline for the left hemisphere
    moved = browser.changed_pixels(before["sagittal"], plain["sagittal"]).mean()
    assert moved > 0.02, f"the sagittal slice did not move to where the latent fires ({moved:.1%} of pixels changed)"

    shares = {}
    for name in browser.VIEWS:
        head = plain[name].sum(axis=-1) > 40
        hot = browser.changed_pixels(plain[name], shown[name]) & head
        shares[name] = hot.sum() / max(head.sum(), 1)
        if hot.sum():
            colour = shown[name][hot]
            assert np.mean(colour[:, 0] - colour[:, 2]) > 40, f"{name}: the overlay is not in the heat colour map"
    assert sum(share >= MIN_SHARE for share in shares.values()) >= 2, f"overlay shares of the head's pixels: {shares}"
    print("overlay share of the head's pixels per view:", {k: round(float(v), 3) for k, v in shares.items()})

    # Axial and coronal views show the patient's right on the left of the screen (radiological convention): the
    # right hemisphere, where the latent is zero or (in the ball) below the threshold, keeps every pixel.
    for name in ("axial", "coronal"):
        head = plain[name].sum(axis=-1) > 40
        columns = np.flatnonzero(head.any(axis=0))
        middle, half = (columns[0] + columns[-1]) / 2, (columns[-1] - columns[0]) / 2
        x = np.arange(head.shape[1])[None, :]
        right_hemisphere = head & (x < middle - 0.1 * half)
        left_hemisphere = head & (x > middle + 0.1 * half)
        hot = browser.changed_pixels(plain[name], shown[name])
        assert right_hemisphere.sum() > 1000 and (hot & left_hemisphere).sum() > 0.1 * left_hemisphere.sum()
        changed = browser.changed_pixels(plain[name], shown[name], level=browser.SAME_PICTURE_LEVEL)
        assert (changed & right_hemisphere).sum() == 0, (
            f"{name}: {(changed & right_hemisphere).sum()} pixels changed where the latent is below its threshold"
        )
    page.click(ROW)
    page.wait_for_selector("#overlay-legend", timeout=WAIT_MS)
    browser.settled_pixels(page, "axial", quiet_ms=QUIET_MS, timeout_s=WAIT_S)
    browser.save_screenshot(page, ARTIFACTS / "viewer-brain-overlay.png")


@pytest.mark.skipif(os.environ.get("MEDSEGLENS_SCREENSHOTS") != "1", reason="writes the README's screenshot")
def test_readme_screenshot_of_a_worker_latent_on_a_brain(tmp_path_factory):
    """The README's viewer picture: the tests' trained tiny U-Net and SAE (`viewer_steering_cases`) run by the
    worker on the 2 mm synthetic brain; the edema latent's map, computed by the worker, over the case."""
    from playwright.sync_api import sync_playwright
    from viewer_steering_cases import write_brain_steering_workspace

    pytest.importorskip("playwright")
    _ensure_chromium()
    workspace, case_id, latent = write_brain_steering_workspace(
        tmp_path_factory.mktemp("brain-steer-ws"), tmp_path_factory.mktemp("assets")
    )
    row = f"#overlay-latent-{latent}"
    with (
        browser.viewer_server(workspace.root, env=subprocess_env()) as server,
        sync_playwright() as playwright,
        browser.chromium(playwright, viewport=(1600, 900)) as page,
    ):
        page.goto(server.url)
        browser.wait_for_frames(page, timeout_ms=WAIT_MS)
        page.wait_for_selector(row, timeout=WAIT_MS)
        assert case_id in page.inner_text("#case-title")
        page.click(row)
        page.wait_for_selector("#overlay-legend", timeout=WAIT_MS)
        page.click("#seg-reference")  # the case's own tumour beside the latent
        page.wait_for_selector("#seg-reference.v-btn--active", timeout=WAIT_MS)
        browser.settled_pixels(page, "axial", quiet_ms=QUIET_MS, timeout_s=WAIT_S)
        shot = browser.save_screenshot(page, ARTIFACTS / "viewer-brain-latent.png")
        _small_png(shot, README_SCREENSHOT)
        page.click(f"#steer-{latent}")
        thumb = page.locator(f"#strength-{latent} .v-slider-thumb")
        thumb.wait_for()
        thumb.focus()
        page.keyboard.press("PageUp")
        page.wait_for_function(
            "() => document.getElementById('steer-summary').innerText.includes('voxels changed')", timeout=WAIT_MS
        )
        page.wait_for_selector("#cancel-job", state="hidden", timeout=WAIT_MS)
        browser.settled_pixels(page, "axial", quiet_ms=QUIET_MS, timeout_s=WAIT_S)
        browser.save_screenshot(page, ARTIFACTS / "viewer-brain-steering.png")
