"""The triage worklist in the browser (issue 17.4): real headless Chromium against `medseglens serve`.

The workspace (`viewer_steering_cases`: a trained tiny U-Net, its 16-latent SAE, two planted cases) names a
worklist whose ranks disagree with the index's order: "planted-las" (second in the index and alphabetically,
and no failure flag, so it is not what the viewer would open without a worklist) is rank 1. The case list
shows the cases in rank order with their risk and the viewer opens rank 1; the Why panel gives its rank, risk
and top latents with their descriptions; a click on a top latent shows its map through the latent browser's
path; the uncertainty toggle overlays the softmax entropy, which changes pixels only inside the head (the map
is 0 outside the brain), and its legend is in nats. The screenshot goes to Testing/artifacts/viewer-triage.png.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT, WAIT_S, subprocess_env
from scipy import ndimage
from slicer_support import write_test_worklist
from test_viewer_browser import _ensure_chromium
from viewer_steering_cases import EDEMA_DESCRIPTION, write_steering_workspace

from MedSegLensLib.data import read_case
from MedSegLensLib.viewer import browser
from MedSegLensLib.viewer.workspace import write_workspace_index

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]
ARTIFACTS = ROOT / "Testing" / "artifacts"
WAIT_MS = WAIT_S * 1000
RANKED = ("planted-las", "planted")  # rank 1, rank 2
OTHER_LATENT_DESCRIPTION = "second top latent of the test worklist"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from MedSegLensLib.steering import sae_sha256

    pytest.importorskip("playwright")
    _ensure_chromium()
    assets = tmp_path_factory.getbasetemp() / "latents"  # built once with the worker tests' `assets_fixture("latents")`
    assets.mkdir(exist_ok=True)
    workspace, edema = write_steering_workspace(tmp_path_factory.mktemp("triage-ws"), assets)
    for case in workspace.cases:
        case.failure = False  # without the worklist the viewer would open the index's first case
    other = (edema + 1) % 16
    top = [
        {"latent": edema, "excess": 0.3, "description": EDEMA_DESCRIPTION},
        {"latent": other, "excess": 0.1, "description": OTHER_LATENT_DESCRIPTION},
    ]
    rows = [{"case_id": RANKED[0], "risk": 0.9, "top_latents": top}, {"case_id": RANKED[1], "risk": 0.4}]
    write_test_worklist(workspace.root / "triage", rows, sae_sha256=sae_sha256(workspace.root / "saes" / "unet-dec"))
    workspace.triage = "triage"
    write_workspace_index(workspace)
    with browser.viewer_server(workspace.root, env=subprocess_env()) as server:
        yield workspace, server, edema, top


@pytest.fixture(scope="module")
def page(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, browser.chromium(playwright, viewport=(1600, 900)) as page:
        page.goto(served[1].url)
        browser.wait_for_frames(page, timeout_ms=WAIT_MS)
        yield page


def _settled(page) -> dict[str, np.ndarray]:
    return {name: browser.steady_pixels(page, name, WAIT_S) for name in browser.VIEWS}


def test_cases_are_listed_by_risk_and_the_top_ranked_case_opens(page):
    ids = page.eval_on_selector_all("[id^='case-']:not(#case-title)", "items => items.map((i) => i.id)")
    assert ids == [f"case-{case_id}" for case_id in RANKED]
    assert page.inner_text(f"#risk-{RANKED[0]}") == "#1 · 0.900"
    assert page.inner_text(f"#risk-{RANKED[1]}") == "#2 · 0.400"
    page.wait_for_function(
        "(id) => document.getElementById('case-title').innerText.startsWith(id + ' ')", arg=RANKED[0], timeout=WAIT_MS
    )


def test_the_why_panel_lists_the_top_latents_and_a_click_shows_one(page, served):
    _, _, edema, top = served
    assert page.inner_text("#why-summary").startswith("rank 1 of 2 · SAE risk 0.900")
    rows = page.eval_on_selector_all("#why-latents tr[id^='why-latent-']", "rows => rows.map((r) => r.innerText)")
    assert [row.split("\t")[0] for row in rows] == [str(t["latent"]) for t in top]
    assert [row.split("\t")[-1] for row in rows] == [t["description"] for t in top]
    assert "softmax entropy" in page.inner_text("#why-baselines")

    page.wait_for_selector(f"#overlay-latent-{edema}", timeout=WAIT_MS)  # the case's analysis is in
    page.click("#seg-none")  # MRI only: every changed pixel below is an overlay's
    page.wait_for_selector("#seg-none.v-btn--active", timeout=WAIT_MS)
    before = _settled(page)
    page.click(f"#why-latent-{edema}")
    page.wait_for_function(
        "(j) => (document.getElementById('legend-text') || {}).innerText?.startsWith('latent ' + j + ' ')",
        arg=edema,
        timeout=WAIT_MS,
    )
    page.wait_for_selector(f"#overlay-latent-{edema}.bg-primary", timeout=WAIT_MS)  # the same row as the table's
    shown = _settled(page)
    changed = [browser.changed_pixels(before[name], shown[name]).mean() for name in browser.VIEWS]
    assert max(changed) > 0.005, f"share of pixels changed per view: {changed}"


def test_the_uncertainty_toggle_overlays_the_entropy_inside_the_head_only(page, served):
    edema = served[2]
    page.wait_for_selector(f"#overlay-latent-{edema}", timeout=WAIT_MS)
    page.click("#seg-none")
    page.wait_for_selector("#seg-none.v-btn--active", timeout=WAIT_MS)
    page.evaluate("() => { const r = document.querySelector('#latent-table tr.bg-primary'); if (r) r.click(); }")
    page.wait_for_selector("#overlay-legend", state="detached", timeout=WAIT_MS)
    plain = _settled(page)
    page.click("#uncertainty-toggle input")
    page.wait_for_function(
        "() => (document.getElementById('legend-text') || {}).innerText?.startsWith('softmax entropy (nats, at most')",
        timeout=WAIT_MS,
    )
    assert "entropy (nats), p" in page.inner_text("#overlay-legend")
    shown = _settled(page)
    browser.save_screenshot(page, ARTIFACTS / "viewer-triage.png")
    brain = np.any(read_case(served[0].root / "cohorts" / "ssa" / RANKED[0]).image != 0, axis=0)
    brain_voxels = max(int(np.ptp(np.flatnonzero(brain.any(axis=tuple({0, 1, 2} - {a}))))) + 1 for a in range(3))
    inside = []
    for name in browser.VIEWS:
        head = ndimage.binary_fill_holes(plain[name].sum(axis=-1) > 40)
        extent = max(int(np.ptp(np.flatnonzero(head.any(axis=a)))) + 1 for a in (0, 1))
        # the overlay is interpolated: its edge may reach up to one voxel (here ~15 pixels) beyond the MRI's
        near_head = ndimage.distance_transform_edt(~head) <= extent / brain_voxels
        moved = browser.changed_pixels(plain[name], shown[name], level=browser.SAME_PICTURE_LEVEL)
        assert (moved & ~near_head).sum() == 0, f"{name}: {(moved & ~near_head).sum()} pixels changed outside the head"
        inside.append((moved & head).sum() / head.sum())
    assert max(inside) > 0.02, f"share of the head's pixels the entropy map changed per view: {inside}"
    page.click("#uncertainty-toggle input")
    page.wait_for_selector("#overlay-legend", state="detached", timeout=WAIT_MS)
