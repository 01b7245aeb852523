"""Latents and steering end to end: real headless Chromium against `medseglens serve` on 127.0.0.1.

The workspace holds a trained tiny U-Net, its SAE and an interpretation file
(`viewer_steering_cases`). Opening the failure case runs the worker's `encode`;
the latent browser lists the case's active latents with the interpretation's
categories (filter, sort); clicking one asks the worker for its map (nothing is
precomputed) and overlays it; the edema latent's strength slider steers through
the worker and the views show the steered segmentation with its Dice; Accept
writes a new .seg.nrrd with the steering provenance. Screenshots go to
Testing/artifacts/ (with MEDSEGLENS_SCREENSHOTS=1 also a milder steering with the
map, `viewer-steering-mild.png`; the README's picture comes from
test_viewer_overlay_browser.py, on a brain-sized case).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from conftest import ROOT, WAIT_S, subprocess_env
from test_viewer_browser import _ensure_chromium
from viewer_steering_cases import EDEMA_DESCRIPTION, write_steering_workspace

from MedSegLensLib.latent_browser import short_name
from MedSegLensLib.viewer import browser

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]
ARTIFACTS = ROOT / "Testing" / "artifacts"
MILD_SCREENSHOT = ARTIFACTS / "viewer-steering-mild.png"
ANALYSIS_TIMEOUT_MS = 240000


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    pytest.importorskip("playwright")
    _ensure_chromium()
    workspace, edema = write_steering_workspace(tmp_path_factory.mktemp("steer-ws"), tmp_path_factory.mktemp("assets"))
    with browser.viewer_server(workspace.root, env=subprocess_env()) as server:
        yield workspace, server, edema


@pytest.fixture(scope="module")
def page(served):
    from playwright.sync_api import sync_playwright

    _, server, edema = served
    with sync_playwright() as playwright, browser.chromium(playwright, viewport=(1600, 900)) as page:
        page.goto(server.url)
        browser.wait_for_frames(page)
        page.wait_for_selector(f"#overlay-latent-{edema}", timeout=ANALYSIS_TIMEOUT_MS)
        yield page


def _rows(page) -> list[str]:
    return page.eval_on_selector_all("#latent-table tbody tr[id^='overlay-']", "rows => rows.map(r => r.id)")


def test_the_analysis_lists_the_active_latents_with_the_interpretation(page, served):
    _, _, edema = served
    assert "planted-las" in page.inner_text("#case-title")
    row = page.inner_text(f"#overlay-latent-{edema}")
    # one line: category, confidence, the description's first clause as its name, peak here vs typical
    assert "edema" in row and "0.80" in row and short_name(EDEMA_DESCRIPTION) in row and " / " in row
    assert page.get_attribute(f"#overlay-latent-{edema}", "title") == EDEMA_DESCRIPTION
    rows = _rows(page)
    assert len(rows) >= 2 and len(set(rows)) == len(rows)
    page.fill("#latent-filter", "edema")
    page.wait_for_function("() => document.querySelectorAll(\"#latent-table tbody tr[id^='overlay-']\").length === 1")
    assert _rows(page) == [f"overlay-latent-{edema}"]
    page.fill("#latent-filter", "")
    page.wait_for_function(
        f"() => document.querySelectorAll(\"#latent-table tbody tr[id^='overlay-']\").length === {len(rows)}"
    )
    page.click("#sort-0")  # by latent index, ascending
    page.wait_for_function("() => document.getElementById('sort-0').innerText.includes('▲')")
    by_index = [int(r.removeprefix("overlay-latent-")) for r in _rows(page)]
    assert by_index == sorted(by_index) and sorted(by_index) == sorted(
        int(r.removeprefix("overlay-latent-")) for r in rows
    )


def test_selecting_a_latent_overlays_the_map_the_worker_computes(page, served):
    workspace, _, edema = served
    plain = {name: browser.settled_pixels(page, name) for name in browser.VIEWS}
    page.click(f"#overlay-latent-{edema}")
    page.wait_for_selector(f"#overlay-latent-{edema}.bg-primary")
    hot_total = 0
    for name in browser.VIEWS:
        shown = browser.settled_pixels(page, name, quiet_ms=800)
        hot = browser.changed_pixels(plain[name], shown)
        hot_total += int(hot.sum())
        if hot.sum() > 20:  # the heat colour map (red-yellow) shifts what was there towards red
            delta = shown[hot] - plain[name][hot]
            assert np.mean(delta[:, 0] - delta[:, 2]) > 20, f"{name}: the overlay should be in the heat colour map"
    assert hot_total > 100, "the latent's map changed (almost) no pixels"
    assert EDEMA_DESCRIPTION in page.inner_text("#latent-details"), "the details pane shows the full description"
    page.wait_for_selector("#overlay-legend")
    assert not list((workspace.root / ".scratch").glob("session-*/*/latent-*.nii")), "map files must be released"
    browser.save_screenshot(page, ARTIFACTS / "viewer-latent-map.png")


def test_moving_a_strength_slider_steers_the_segmentation(page, served):
    _, _, edema = served
    page.click(f"#overlay-latent-{edema}")  # overlay off: the views show MRI + segmentation
    page.wait_for_selector(f"#overlay-latent-{edema}.bg-primary", state="detached")
    before = {name: browser.settled_pixels(page, name) for name in browser.VIEWS}
    page.wait_for_selector("#steer-margin", state="visible")  # by default only within 10 mm of the tumour
    page.click(f"#steer-{edema}")
    thumb = page.locator(f"#strength-{edema} .v-slider-thumb")
    thumb.wait_for()
    thumb.focus()
    for key in ("PageUp", "PageUp", "ArrowRight", "ArrowRight", "ArrowRight", "ArrowLeft"):  # the latest request wins
        page.keyboard.press(key)
    page.wait_for_selector("#seg-steered", timeout=120000)
    page.wait_for_function(
        "() => document.getElementById('steer-summary').innerText.includes('voxels changed')", timeout=120000
    )
    page.wait_for_selector("#cancel-job", state="hidden", timeout=120000)
    changed = sum(
        int(browser.changed_pixels(before[n], browser.settled_pixels(page, n, quiet_ms=800)).sum())
        for n in browser.VIEWS
    )
    assert changed > 50, "steering the edema latent did not change the segmentation in the views"
    assert page.inner_text("#dice-after-ED") != "—", "with a reference, the steered Dice is shown"
    readout = page.inner_text(f"#strength-value-{edema}")  # "+S × typical = +A": strength S, activation added A
    assert readout.startswith("+") and "× typical = +" in readout, readout
    strength = float(readout.split("×")[0])
    assert strength > 1.0 and round(strength * 10) == strength * 10, "steps of a tenth of the typical activation"
    served[0].root.joinpath("shown-strength.txt").write_text(str(strength))
    browser.save_screenshot(page, ARTIFACTS / "viewer-steering.png")


def _published(folder, suffix):
    return sorted(p for p in folder.glob(f"*{suffix}") if not p.name.startswith("."))


def test_accept_writes_the_steered_segmentation_with_its_provenance(page, served):
    workspace, _, edema = served
    folder = workspace.root / "accepted" / "planted-las"
    page.click("#accept")
    deadline = time.monotonic() + WAIT_S
    while not _published(folder, ".provenance.json") and time.monotonic() < deadline:
        time.sleep(0.2)
    [provenance_file] = _published(folder, ".provenance.json")
    [segmentation_file] = _published(folder, ".seg.nrrd")
    record = json.loads(provenance_file.read_text())
    assert record["source"] == "steered" and segmentation_file.name.startswith("steered-")
    assert record["steering"]["spec"]["latents"] == [edema]
    shown = float(workspace.root.joinpath("shown-strength.txt").read_text())
    assert record["steering"]["spec"]["strengths"] == [pytest.approx(shown)], "the last slider position wins"
    assert record["steering"]["spec"]["region"] == {"kind": "tumour-margin", "margin_mm": 10.0}
    assert record["record"]["mode"] == "additive" and len(record["sae_sha256"]) == 64
    assert record["record"]["model_sha256"] == record["model_sha256"]
    import slicerio

    labels = slicerio.read_segmentation(str(segmentation_file))["voxels"]
    assert (labels == 2).sum() > 0
    page.click("#seg-prediction")
    if os.environ.get("MEDSEGLENS_SCREENSHOTS") == "1":  # a milder strength, with the map
        page.click("#seg-steered")
        summary = page.inner_text("#steer-summary")
        page.locator(f"#strength-{edema} .v-slider-thumb").focus()
        for _ in range(int(os.environ.get("MEDSEGLENS_SCREENSHOT_STEPS_DOWN", "4"))):
            page.keyboard.press("ArrowLeft")
        page.wait_for_function(
            "(old) => document.getElementById('steer-summary').innerText !== old", arg=summary, timeout=120000
        )
        page.click(f"#overlay-latent-{edema}")
        browser.settled_pixels(page, "axial", quiet_ms=800)
        browser.save_screenshot(page, MILD_SCREENSHOT)
