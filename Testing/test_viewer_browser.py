"""End to end in real headless Debian Chromium (Playwright) against `medseglens serve` on 127.0.0.1.

The page loads behind its token, the three views show frames, choosing a case, a
latent overlay or a modality changes the pixels, Accept writes new files, nothing is
fetched from anywhere but the viewer. Screenshots and the measured frame latency go to
Testing/artifacts/ (gitignored).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, WAIT_S, subprocess_env
from viewer_support import CASES, write_fixture_workspace

from MedSegLensLib.viewer import browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ARTIFACTS = ROOT / "Testing" / "artifacts"
FAILURE_CASE, OTHER_CASE = CASES[1], CASES[0]


def _ensure_chromium() -> None:
    if browser.chromium_path():
        return
    import dev  # the bootstrap installs Debian's chromium when it may (root with apt-get)

    dev.ensure_chromium()
    if not browser.chromium_path():
        pytest.skip("Debian chromium is absent and could not be installed here (needs root and apt-get)")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    pytest.importorskip("playwright")
    _ensure_chromium()
    workspace = write_fixture_workspace(tmp_path_factory.mktemp("browser-workspace"), with_model=True)
    with browser.viewer_server(workspace.root, env=subprocess_env()) as server:
        yield workspace, server


@pytest.fixture(scope="module")
def playwright_session(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@contextlib.contextmanager
def _opened(playwright, server: browser.ServerProcess):
    """A fresh Chromium on the viewer's page, once every view shows a frame; it records every request."""
    with browser.chromium(playwright) as page:
        page.requested = []
        page.on("request", lambda request: page.requested.append(request.url))
        page.on("websocket", lambda socket: page.requested.append(socket.url))
        page.goto(server.url)
        browser.wait_for_frames(page)
        yield page


@pytest.fixture(scope="module")
def page(served, playwright_session):
    with _opened(playwright_session, served[1]) as page:
        yield page


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=WAIT_S) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


_changed = browser.changed_pixels
_settle = browser.settled_pixels


def _wait_until_brighter(page, name: str, than: np.ndarray, by: float, timeout_s: float = 60.0) -> np.ndarray:
    """The view's pixels once their mean exceeds `than`'s by `by` (or the last frame after `timeout_s`):
    a loaded server can take seconds to apply the key presses."""
    deadline = time.monotonic() + timeout_s
    now = browser.view_pixels(page, name)
    while now.mean() <= than.mean() + by and time.monotonic() < deadline:
        time.sleep(0.2)
        now = browser.view_pixels(page, name)
    return now


def test_every_request_needs_the_token(served):
    _, server = served
    assert _status(server.origin + "/index.html") == 403
    assert _status(server.origin + "/index.html?secret=wrong-token-0123456789") == 403
    assert _status(server.url) == 200
    token = server.url.split("secret=")[1]
    assert _status(f"{server.origin}/../../../../etc/passwd?secret={token}") in (403, 404)
    assert _status(f"{server.origin}/%2e%2e/%2e%2e/etc/passwd?secret={token}") in (403, 404)


def test_page_loads_and_three_views_show_the_mri(page):
    for name in browser.VIEWS:
        pixels = browser.view_pixels(page, name)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100, f"{name}: frame too small"
        assert pixels.std() > 20, f"{name}: blank frame"
    assert "secret=" not in page.url, "the token should leave the address bar"
    assert FAILURE_CASE.case_id in page.inner_text("#case-title"), "the viewer should open on the failure case"
    browser.save_screenshot(page, ARTIFACTS / "viewer-loaded.png")


def test_the_page_talks_to_nothing_but_the_viewer(page, served):
    _, server = served
    own = server.origin.split("//")[1]
    hosts = {url.split("//")[1].split("/")[0] for url in page.requested if "//" in url}
    assert hosts == {own}, f"requests left the viewer: {hosts - {own}}"


def test_selecting_a_case_changes_the_views(page):
    before = {name: _settle(page, name) for name in browser.VIEWS}
    latency = browser.frame_latency_ms(page, "axial", f"#case-{OTHER_CASE.case_id}")
    page.wait_for_function(f"document.getElementById('case-title').innerText.includes('{OTHER_CASE.case_id}')")
    for name in browser.VIEWS:
        after = _settle(page, name)
        assert _changed(before[name], after).sum() > 200, f"{name}: the frame did not change with the case"
    _record("case_switch_ms", [latency])


def test_selecting_a_latent_overlays_it_in_its_colour_map(page):
    plain = _settle(page, "axial")
    latencies = [browser.frame_latency_ms(page, "axial", "#overlay-latent-7")]
    with_overlay = _settle(page, "axial")
    hot = _changed(plain, with_overlay)
    assert hot.sum() > 50, "selecting the latent changed nothing in the axial view"
    colour = with_overlay[hot]
    assert np.mean(colour[:, 0] - colour[:, 2]) > 40, "the overlay should be drawn in the heat colour map (red-yellow)"
    browser.save_screenshot(page, ARTIFACTS / "viewer-overlay.png")
    for _ in range(4):  # toggle off and on: each change is one frame to wait for
        latencies.append(browser.frame_latency_ms(page, "axial", "#overlay-latent-7"))
        _settle(page, "axial", quiet_ms=200)
    latencies.append(browser.frame_latency_ms(page, "axial", "#overlay-latent-12"))
    _record("overlay_change_ms", latencies)


def test_modality_and_window_level_change_the_frame(page):
    before = _settle(page, "coronal")
    browser.frame_latency_ms(page, "coronal", "#modality-t2f")
    after = _settle(page, "coronal")
    assert _changed(before, after).sum() > 200, "switching to FLAIR did not change the coronal view"
    slider = page.locator("#display-range .v-slider-thumb").nth(1)
    slider.focus()
    for _ in range(4):
        page.keyboard.press("PageDown")
    narrowed = _wait_until_brighter(page, "coronal", after, by=5)
    assert narrowed.mean() > after.mean() + 5, "lowering the window's upper bound should brighten the image"


def _published(folder: Path, suffix: str) -> list[Path]:
    return sorted(p for p in folder.glob(f"*{suffix}") if not p.name.startswith("."))


def test_accept_writes_a_new_segmentation_each_time(page, served):
    workspace, _ = served
    folder = workspace.root / "accepted" / OTHER_CASE.case_id
    for expected in (1, 2):
        page.click("#accept")
        deadline = time.monotonic() + WAIT_S
        while len(_published(folder, ".provenance.json")) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_published(folder, ".seg.nrrd")) == len(_published(folder, ".provenance.json")) == expected
    provenance = [json.loads(p.read_text()) for p in _published(folder, ".provenance.json")]
    assert {p["segmentation_file"] for p in provenance} == {p.name for p in _published(folder, ".seg.nrrd")}
    assert all(p["source"] == "prediction" and p["source_sha256"] for p in provenance)
    _assert_same_segmentation(
        _published(folder, ".seg.nrrd")[0], workspace.root / workspace.case(OTHER_CASE.case_id).prediction
    )
    page.wait_for_function(
        "document.getElementById('accepted-list').innerText.split('\\n').filter(Boolean).length === 2"
    )


def _wait_for_message(page, text: str, timeout_ms: float = 180000) -> str:
    page.wait_for_function(
        "(text) => document.getElementById('message').innerText.includes(text)", arg=text, timeout=timeout_ms
    )
    return page.inner_text("#message")


def test_running_the_model_in_the_worker_replaces_the_prediction(page, served):
    workspace, _ = served
    page.click("#seg-prediction")
    before = _settle(page, "axial")
    page.click("#run-model")
    page.wait_for_selector("#cancel-job", state="visible")
    _wait_for_message(page, "segmentation by unet shown")
    after = _settle(page, "axial")
    assert _changed(before, after).sum() > 50, "the worker's segmentation should replace the shown prediction"
    assert list((workspace.root / ".scratch").glob("session-*/*/segmentation.nii.gz")) == [], (
        "worker outputs must be released"
    )
    folder = workspace.root / "accepted" / OTHER_CASE.case_id
    count = len(_published(folder, ".provenance.json"))
    page.click("#accept")
    deadline = time.monotonic() + WAIT_S
    while len(_published(folder, ".provenance.json")) == count and time.monotonic() < deadline:
        time.sleep(0.2)
    newest = max(_published(folder, ".provenance.json"), key=lambda p: p.stat().st_mtime_ns)
    record = json.loads(newest.read_text())
    assert record["source_file"] is None and len(record["model_sha256"]) == 64
    assert record["record"]["mode"] == "none" and record["record"]["model_sha256"] == record["model_sha256"]


def test_cancelling_a_model_run_leaves_the_views_as_they_were(playwright_session, tmp_path):
    """The worker holds inside the model run (pause point `job:segment`), so Cancel always meets a running job."""
    workspace = write_fixture_workspace(tmp_path, with_model=True)
    env = dict(subprocess_env(), MEDSEGLENS_PAUSE_AT="job:segment")
    with browser.viewer_server(workspace.root, env=env) as server, _opened(playwright_session, server) as page:
        before = {view: browser.steady_pixels(page, view, WAIT_S) for view in browser.VIEWS}
        page.click("#run-model")
        page.wait_for_function(
            "document.getElementById('job-text').innerText.includes('running the model')", timeout=180000
        )
        assert _workers_of(server.process.pid), "the viewer's worker runs, held at the pause point"
        page.click("#cancel-job")
        assert "cancel" in _wait_for_message(page, "cancel").lower()
        page.wait_for_selector("#cancel-job", state="hidden")
        for view in browser.VIEWS:
            after = browser.steady_pixels(page, view, WAIT_S)
            assert not _changed(before[view], after, level=browser.SAME_PICTURE_LEVEL).any(), (
                f"a cancelled run changed the {view} view"
            )
        deadline = time.monotonic() + WAIT_S
        while _workers_of(server.process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _workers_of(server.process.pid), "Cancel must kill the worker's process tree"


def _workers_of(pid: int) -> set[int]:
    """Live worker processes among `pid`'s descendants (this viewer's only: suites may run side by side)."""
    children: dict[int, list[int]] = {}
    commands: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            if state != "Z":
                children.setdefault(int(parent), []).append(int(entry.name))
                commands[int(entry.name)] = (entry / "cmdline").read_bytes()
        except OSError:
            continue
    found, todo = set(), list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if b"MedSegLensLib.worker" in commands.get(child, b""):
            found.add(child)
        todo.extend(children.get(child, []))
    return found


def test_without_an_sae_steering_says_what_it_needs(page):
    assert "needs a model and its SAE" in page.inner_text("#steer-note")


def _assert_same_segmentation(accepted: Path, prediction: Path) -> None:
    """The accepted .seg.nrrd (read back with slicerio) holds the prediction's labels on its grid."""
    import nibabel as nib
    import slicerio

    segmentation = slicerio.read_segmentation(str(accepted))
    image = nib.load(prediction)
    labels = np.asarray(image.dataobj)
    assert sorted(s["labelValue"] for s in segmentation["segments"]) == [1, 2, 3]
    for value in (1, 2, 3):
        assert (segmentation["voxels"] == value).sum() == (labels == value).sum()
    lps_from_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    assert np.allclose(segmentation["ijkToLPS"], lps_from_ras @ image.affine, atol=1e-4)


def _record(key: str, values: list[float]) -> None:
    """Keep the measured latencies with the screenshots (the README figure comes from bench/)."""
    path = ARTIFACTS / "viewer-latency.json"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = {"median": statistics.median(values), "values": values}
    path.write_text(json.dumps(data, indent=2))
    print(f"{key}: median {statistics.median(values):.0f} ms over {len(values)}")
