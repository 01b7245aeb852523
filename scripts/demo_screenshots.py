"""README pictures taken on the real demo workspace (`python3 dev.py demo`), which is only read.

1. `demo-viewer.png`: `medseglens serve --workspace W --case C` in headless Debian
   Chromium (`MedSegLensLib.viewer.browser`), C the first failure case with precomputed
   latent maps, once the viewer's worker has analysed it (its message names the case's
   active latents and no job runs: the analysis ends by showing the prediction, so
   clicks made before it are overridden, and a picture taken then shows its progress
   bar), on T1c without segmentation, one tumour latent selected in the latent browser:
   the three views jump to where it fires, heat overlay with its legend, the latent's
   details below.
2. `demo-render.png`: `medseglens render --map` of the same latent map, all three views
   with the legend row, from the latent's firing threshold (the one its label was
   validated at) instead of the viewer's default p50, which on this layer also
   shows the latent's low-level lattice over the whole field of view.
3. `demo-gallery.png`: the top of the U-Net interpretation gallery (`interpret/unet/gallery.html`).
4. `demo-slicer.png`: the same latent map as the Slicer module draws it (`LatentOverlay`, through
   `scripts/readme_screenshot.py`'s `render_module_views`) with the model's prediction as outlines.

The latent shown is the default case's overlay whose interpretation category is a
tumour class (edema, enhancing tumour, necrotic core, tumour boundary) with the
highest held-out AUROC; without one, the most tumour-specific overlay. Each PNG is shrunk to 256 colours (and,
when still over --max-kb, fewer pixels).

    python scripts/demo_screenshots.py [--workspace ~/.cache/medseglens/demo] [--out Resources/Screenshots]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from MedSegLensLib.viewer import browser  # noqa: E402
from MedSegLensLib.viewer.workspace import Overlay, WorkspaceCase, read_workspace  # noqa: E402
from scripts.readme_screenshot import render_module_views  # noqa: E402

TUMOUR_CATEGORIES = ("edema", "enhancing tumour", "necrotic core", "tumour boundary")
WAIT_MS = 180_000


def default_case(cases: list[WorkspaceCase]) -> WorkspaceCase:
    """The case the viewer opens first: the first failure case with latent maps, else the first with maps."""
    with_maps = [case for case in cases if case.overlays]
    return next((case for case in with_maps if case.failure), with_maps[0])


def tumour_latent(case: WorkspaceCase, records: list[dict]) -> Overlay:
    """The case's overlay named by a tumour class whose label holds best on held-out cases (held-out AUROC in the
    SAE's latents.json); without one, the overlay with most of its activation inside the tumour."""
    named = [o for o in case.overlays if o.category in TUMOUR_CATEGORIES]
    if not named:
        return max(case.overlays, key=lambda o: o.specificity or 0.0)
    return max(named, key=lambda o: (records[o.latent]["held_out"] or {}).get("auroc") or 0.0)


def small_png(source: Path, target: Path, max_kb: int) -> int:
    """`source` in 256 colours, narrowed by 10 % steps until under `max_kb`; returns the bytes written."""
    from PIL import Image

    image = Image.open(source).convert("RGB")
    width = image.width
    while True:
        shrunk = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        quantized = shrunk.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        quantized.save(target, optimize=True)
        if target.stat().st_size <= max_kb * 1024 or width < 400:
            return target.stat().st_size
        width = int(width * 0.9)


def wait_for_analysis(page, case_id: str) -> None:
    """Until the worker's analysis of the opened case is shown (or the viewer reports an error) and no job runs."""
    page.wait_for_function(
        """(id) => { const m = document.getElementById('message');
              return m.classList.contains('text-error')
                  || (m.innerText.includes(id + ': ') && m.innerText.includes('active latents')); }""",
        arg=case_id,
        timeout=WAIT_MS,
    )
    message = " ".join(page.inner_text("#message").split())
    if "active latents" not in message:
        raise SystemExit(f"the viewer did not analyse {case_id}: {message}")
    page.wait_for_selector("#cancel-job", state="hidden", timeout=WAIT_MS)
    print("viewer:", message)


def viewer_picture(workspace: Path, case: WorkspaceCase, overlay: Overlay, raw: Path) -> None:
    from playwright.sync_api import sync_playwright

    row = f'[id="overlay-{overlay.name}"]'
    with (
        browser.viewer_server(workspace, extra_args=("--case", case.case_id)) as server,
        sync_playwright() as playwright,
        browser.chromium(playwright, viewport=(1600, 900)) as page,
    ):
        page.goto(server.url)
        browser.wait_for_frames(page, timeout_ms=WAIT_MS)
        wait_for_analysis(page, case.case_id)
        page.wait_for_selector(row, timeout=WAIT_MS)
        page.click("#modality-t1c")  # the enhancing rim is visible on T1c
        page.click("#seg-none")  # MRI and the latent only: a filled segmentation would hide the overlay
        page.wait_for_selector("#seg-none.v-btn--active", timeout=WAIT_MS)
        page.click(row)
        page.wait_for_selector("#overlay-legend", timeout=WAIT_MS)
        for name in browser.VIEWS:
            browser.steady_pixels(page, name, WAIT_MS / 1000)
        page.wait_for_selector("#job-progress", state="hidden", timeout=WAIT_MS)
        print("viewer legend:", " ".join(page.inner_text("#overlay-legend").split()))
        browser.save_screenshot(page, raw)


def gallery_picture(gallery: Path, raw: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, browser.chromium(playwright, viewport=(1200, 900)) as page:
        page.goto(gallery.resolve().as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(raw), clip={"x": 0, "y": 0, "width": 1200, "height": 900})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path.home() / ".cache" / "medseglens" / "demo")
    parser.add_argument("--out", type=Path, default=ROOT / "Resources" / "Screenshots")
    parser.add_argument("--max-kb", type=int, default=150)
    args = parser.parse_args()
    workspace = read_workspace(args.workspace.expanduser())
    case = default_case(workspace.cases)
    _, sae = workspace.analysis()
    records = json.loads(workspace.resolve(sae.interpretation, "interpretation").read_text())["latents"]
    overlay = tumour_latent(case, records)
    threshold = records[overlay.latent]["firing_threshold"]
    print(f"case {case.case_id} ({case.population}), {overlay.name}: {overlay.category} — {overlay.description}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp)
        viewer_picture(workspace.root, case, overlay, raw / "viewer.png")
        map_file = workspace.resolve(overlay.file, "latent map")
        subprocess.run(
            [sys.executable, "-m", "MedSegLensLib", "render", "--case", str(workspace.resolve(case.folder))]
            + ["--map", str(map_file), "--latent", str(overlay.latent), "--threshold", str(threshold)]
            + ["--view", "all", "--size", "320"]
            + ["--out", str(raw / "render.png")],
            check=True,
        )
        gallery_picture(workspace.root / "interpret" / "unet" / "gallery.html", raw / "gallery.png")
        render_module_views(
            workspace.resolve(case.folder),
            workspace.resolve(case.prediction, "prediction"),
            map_file,
            overlay.latent,
            str(raw / "slicer.png"),
        )
        for name in ("viewer", "render", "gallery", "slicer"):
            size = small_png(raw / f"{name}.png", args.out / f"demo-{name}.png", args.max_kb)
            print(f"{args.out / f'demo-{name}.png'}: {size // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
