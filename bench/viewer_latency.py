"""Browser latency of the viewer: from a click in Chromium to the view's next frame.

    python bench/viewer_latency.py [--workspace DIR --case ID --overlays A B] [--repeats N]

Without --workspace it writes a BraTS-sized case (240x240x155, 1 mm) with two
smooth latent maps into a temporary workspace. It starts `medseglens serve` on
127.0.0.1, drives Debian's headless Chromium and times, inside the page, each
click (latent overlay, modality, case) until the axial view's <img> shows a new
frame. Baseline, timed in the same run on the same machine: the same overlay
change applied and rendered in-process, offscreen, at the browser's view sizes
(the server's share of the latency); the ratio is the figure to compare across
machines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

from MedSegLensLib.data import MODALITIES, Grid, write_volume  # noqa: E402
from MedSegLensLib.viewer import browser  # noqa: E402
from MedSegLensLib.viewer.workspace import Overlay, Workspace, WorkspaceCase, read_workspace, write_workspace_index  # noqa: E402

SHAPE = (240, 240, 155)


def _smooth_blob(shape, centre, sigma) -> np.ndarray:
    axes = [np.arange(n, dtype=np.float32) for n in shape]
    parts = [np.exp(-((a - c) ** 2) / (2 * sigma**2)) for a, c in zip(axes, centre)]
    return parts[0][:, None, None] * parts[1][None, :, None] * parts[2][None, None, :]


def write_bench_workspace(root: Path) -> tuple[Workspace, str, list[str]]:
    """Two BraTS-sized cases with a tumour, labels, a prediction and two latent maps each."""
    rng = np.random.default_rng(0)
    grid = Grid(SHAPE, np.diag([1.0, 1.0, 1.0, 1.0]))
    cases = []
    for number, centre in enumerate([(100, 130, 80), (150, 100, 70)]):
        case_id = f"BENCH-{number:03d}"
        folder = root / "cohorts" / "bench" / case_id
        brain = _smooth_blob(SHAPE, (120, 120, 77), 60) > 0.2
        tumour = _smooth_blob(SHAPE, centre, 12)
        label = np.zeros(SHAPE, np.uint8)
        label[tumour > 0.2] = 2
        label[tumour > 0.5] = 3
        label[tumour > 0.8] = 1
        for index, modality in enumerate(MODALITIES):
            image = brain * (80 + 10 * index) + 60 * tumour + rng.normal(0, 3, SHAPE)
            write_volume(image.astype(np.float32), grid, folder / f"{case_id}-{modality}.nii.gz")
        write_volume(label, grid, folder / f"{case_id}-seg.nii.gz", dtype=np.uint8)
        overlays = []
        for latent, offset in ((7, (20, 0, 0)), (12, (-20, 10, 0))):
            file = Path("latents", "bench", case_id, f"latent-{latent}.nii.gz")
            spot = tuple(c + o for c, o in zip(centre, offset))
            write_volume((4.0 * _smooth_blob(SHAPE, spot, 8)).astype(np.float32), grid, root / file)
            overlays.append(Overlay(name=f"latent-{latent}", file=str(file), latent=latent, category="bench"))
        cases.append(WorkspaceCase(case_id, "bench", os.path.relpath(folder, root), overlays=overlays))
    workspace = Workspace(root=root, cases=cases)
    write_workspace_index(workspace)
    return workspace, cases[0].case_id, [o.name for o in cases[0].overlays]


def in_process_overlay_ms(
    workspace_dir: Path, case_id: str, overlays: list[str], sizes: dict, repeats: int
) -> list[float]:
    """The same overlay change, applied and rendered offscreen in this process (the server's work)."""
    from trame_slicer.core import SlicerApp
    from trame_slicer.views import DirectViewFactory, ViewLayoutDefinition

    from MedSegLensLib.viewer.display import CaseDisplay

    app = SlicerApp()
    app.view_manager.register_factory(DirectViewFactory(do_render_offscreen=True))
    definitions = {
        "axial": ViewLayoutDefinition.axial_view(),
        "coronal": ViewLayoutDefinition.coronal_view(),
        "sagittal": ViewLayoutDefinition.sagittal_view(),
    }
    for name, definition in definitions.items():
        app.view_manager.create_view(definition).render_window().SetSize(*sizes[name])
    display = CaseDisplay(app, read_workspace(workspace_dir))
    display.load_case(case_id)
    times = []
    for index in range(repeats + len(overlays)):
        start = time.perf_counter()
        display.show_overlay(overlays[index % len(overlays)])  # redraws the three views once, directly
        times.append(1000 * (time.perf_counter() - start))
    return times[len(overlays) :]  # as in the browser run, each map has been read once already


def browser_latencies(
    server_url: str, case_id: str, other_case: str, overlays: list[str], repeats: int
) -> tuple[dict, dict]:
    from playwright.sync_api import sync_playwright

    results: dict[str, list[float]] = {"overlay": [], "modality": [], "case": []}
    with sync_playwright() as playwright, browser.chromium(playwright) as page:
        page.goto(server_url)
        browser.wait_for_frames(page)
        page.click(f"#case-{case_id}")
        page.wait_for_function(f"document.getElementById('case-title').innerText.includes('{case_id}')")
        time.sleep(1.0)
        sizes = {
            name: tuple(
                int(v)
                for v in page.evaluate(
                    "(n) => "
                    f"{{ {browser.FIND_IMAGE} const i = findImage(n); return [i.naturalWidth, i.naturalHeight]; }}",
                    name,
                )
            )
            for name in browser.VIEWS
        }
        for index in range(repeats):
            results["overlay"].append(
                browser.frame_latency_ms(page, "axial", f"#overlay-{overlays[index % len(overlays)]}")
            )
            time.sleep(0.3)
        for index in range(repeats):
            modality = ("t2f", "t1n")[index % 2]
            results["modality"].append(browser.frame_latency_ms(page, "axial", f"#modality-{modality}"))
            time.sleep(0.3)
        for index in range(max(2, repeats // 3)):
            target = (other_case, case_id)[index % 2]
            results["case"].append(browser.frame_latency_ms(page, "axial", f"#case-{target}"))
            time.sleep(1.0)
    return results, sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--case")
    parser.add_argument("--other-case")
    parser.add_argument("--overlays", nargs="+")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if browser.chromium_path() is None:
        print("Debian chromium is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="medseglens-bench-") as scratch:
        if args.workspace:
            workspace = read_workspace(args.workspace)
            case_id = args.case or workspace.cases[0].case_id
            overlays = args.overlays or [o.name for o in workspace.case(case_id).overlays]
        else:
            print(f"writing a {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} bench workspace ...", flush=True)
            workspace, case_id, overlays = write_bench_workspace(Path(scratch))
        other = args.other_case or next(c.case_id for c in workspace.cases if c.case_id != case_id)
        shape = "x".join(map(str, workspace.case_files(workspace.case(case_id)).load().shape))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with browser.viewer_server(workspace.root, env=env, extra_args=("--case", case_id)) as server:
            results, sizes = browser_latencies(server.url, case_id, other, overlays, args.repeats)
        baseline = in_process_overlay_ms(workspace.root, case_id, overlays, sizes, args.repeats)
    base = statistics.median(baseline)
    print(f"\ncase {case_id} ({shape}); views {sizes}; {args.repeats} repeats")
    print(f"{'change':<22}{'median ms':>10}{'p90 ms':>9}{'x baseline':>12}")
    for name, values in results.items():
        median, p90 = statistics.median(values), float(np.percentile(values, 90))
        print(f"{name + ' -> frame':<22}{median:>10.0f}{p90:>9.0f}{median / base:>12.1f}")
    print(f"{'baseline (in-process)':<22}{base:>10.0f}{float(np.percentile(baseline, 90)):>9.0f}{1.0:>12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
