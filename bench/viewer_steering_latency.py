"""Steering latency seen in the browser: a strength slider moves -> the steered segmentation's frame arrives.

    python bench/viewer_steering_latency.py [--workspace DIR --case ID --latent J] [--repeats N] [--threads T]

Without --workspace it builds the tests' steering workspace (`Testing/viewer_steering_cases.py`:
a tiny U-Net trained here, its 16-latent SAE, an interpretation file; cases 24^3 voxels) in a
temporary folder. It starts `medseglens serve` on 127.0.0.1 and drives Debian's headless
Chromium. Once the case is analysed it times, inside the page, from a key press on a steering
slider (alternately Home and End: strength -10 and +10, so every press steers anew) until the
axial view shows a new frame: worker steer job + reading the result + new segmentation node +
render + streaming. Baseline in the same run, same page: a key press on the axial view's slice
slider until its next frame (render + streaming only). Prints medians, p90s and the ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "Testing")]

from MedSegLensLib.viewer import browser  # noqa: E402


def _p90(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]


def measure(server_url: str, case_id: str | None, latent: int, repeats: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    results: dict[str, list[float]] = {"steer": [], "scroll": [], "worker_s": []}
    with sync_playwright() as playwright, browser.chromium(playwright, viewport=(1600, 900)) as page:
        page.goto(server_url)
        browser.wait_for_frames(page)
        if case_id:
            page.click(f"#case-{case_id}")
        page.wait_for_selector(f"#steer-{latent}", timeout=600000)
        page.click(f"#steer-{latent}")
        thumb = f"#strength-{latent} .v-slider-thumb"
        page.wait_for_selector(thumb)
        browser.frame_latency_ms(page, "axial", thumb, key="End", timeout_ms=600000)  # warm-up: opens the session
        time.sleep(1.0)
        slice_thumb = "#slider-axial .v-slider-thumb"
        for index in range(repeats):
            results["steer"].append(browser.frame_latency_ms(page, "axial", thumb, key=("Home", "End")[index % 2],
                                                             timeout_ms=120000))
            page.wait_for_selector("#cancel-job", state="hidden")
            summary = re.search(r"([\d.]+) s$", page.inner_text("#steer-summary"))
            if summary:
                results["worker_s"].append(float(summary.group(1)))
            time.sleep(0.5)
            results["scroll"].append(browser.frame_latency_ms(page, "axial", slice_thumb,
                                                              key=("ArrowRight", "ArrowLeft")[index % 2]))
            time.sleep(0.5)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="a workspace whose index lists a model and SAE (default: built here)")
    parser.add_argument("--case", help="case to open (default: the viewer's first failure case)")
    parser.add_argument("--latent", type=int, help="latent to steer (required with --workspace)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads here and in the worker")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="medseglens-steer-bench-") as tmp:
        workspace, latent = args.workspace, args.latent
        if workspace is None:
            import torch

            from viewer_steering_cases import write_steering_workspace

            torch.set_num_threads(args.threads)
            workspace = Path(tmp) / "ws"
            _, latent = write_steering_workspace(workspace, Path(tmp) / "assets")
        elif latent is None:
            parser.error("--latent is required with --workspace")
        with browser.viewer_server(workspace, env=env, timeout=300) as server:
            results = measure(server.url, args.case, latent, args.repeats)
    steer, scroll = statistics.median(results["steer"]), statistics.median(results["scroll"])
    print(f"steering latency in the browser, {args.repeats} repeats, {args.threads} thread(s)")
    print(f"  slider -> steered frame : median {steer:7.0f} ms   p90 {_p90(results['steer']):7.0f} ms")
    if results["worker_s"]:
        print(f"    of which worker steer : median {1000 * statistics.median(results['worker_s']):7.0f} ms")
    print(f"  slice scroll -> frame   : median {scroll:7.0f} ms   p90 {_p90(results['scroll']):7.0f} ms   (baseline)")
    print(f"  ratio steering / scroll : {steer / scroll:.1f}x")


if __name__ == "__main__":
    main()
