"""Steering latency seen in the browser: a strength slider moves -> the steered segmentation's frame arrives.

    python bench/viewer_steering_latency.py --workspace DIR [--case ID] [--latent J] [--repeats N] [--threads T]

DIR is a viewer workspace with a model and an SAE, e.g. the demo's (`python3 dev.py demo --quick
--no-serve` builds a small one). The case defaults to the first failure case, the latent to the
first latent map listed for that case. It starts `medseglens serve` on 127.0.0.1 and drives
Debian's headless Chromium. Once the case is analysed it times, inside the page, from a key press on a steering
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from MedSegLensLib.viewer import browser  # noqa: E402
from MedSegLensLib.viewer.workspace import read_workspace  # noqa: E402


def _p90(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]


def case_and_latent(workspace: Path, case_id: str | None, latent: int | None) -> tuple[str, int]:
    """The case to open (given, else the first failure case, else the first) and a latent with a map on it."""
    cases = read_workspace(workspace).cases
    if not cases:
        raise SystemExit(f"{workspace}: the workspace lists no cases")
    chosen = (
        next((c for c in cases if c.case_id == case_id), None)
        if case_id
        else next((c for c in cases if c.failure), cases[0])
    )
    if chosen is None:
        raise SystemExit(f"{workspace}: no case {case_id!r}")
    if latent is None:
        latent = next((o.latent for o in chosen.overlays if o.latent is not None), None)
        if latent is None:
            raise SystemExit(f"{workspace}: case {chosen.case_id} has no latent map; pass --latent J")
    return chosen.case_id, latent


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
            results["steer"].append(
                browser.frame_latency_ms(page, "axial", thumb, key=("Home", "End")[index % 2], timeout_ms=120000)
            )
            page.wait_for_selector("#cancel-job", state="hidden")
            summary = re.search(r"([\d.]+) s$", page.inner_text("#steer-summary"))
            if summary:
                results["worker_s"].append(float(summary.group(1)))
            time.sleep(0.5)
            results["scroll"].append(
                browser.frame_latency_ms(page, "axial", slice_thumb, key=("ArrowRight", "ArrowLeft")[index % 2])
            )
            time.sleep(0.5)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True, help="a workspace whose index lists a model and SAE")
    parser.add_argument("--case", help="case to open (default: the first failure case)")
    parser.add_argument("--latent", type=int, help="latent to steer (default: the case's first latent map)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads here and in the worker")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    case_id, latent = case_and_latent(args.workspace, args.case, args.latent)
    with browser.viewer_server(args.workspace, env=env, timeout=300) as server:
        results = measure(server.url, case_id, latent, args.repeats)
    steer, scroll = statistics.median(results["steer"]), statistics.median(results["scroll"])
    print(
        f"steering latency in the browser, case {case_id}, latent {latent}, {args.repeats} repeats, "
        f"{args.threads} thread(s)"
    )
    print(f"  slider -> steered frame : median {steer:7.0f} ms   p90 {_p90(results['steer']):7.0f} ms")
    if results["worker_s"]:
        print(f"    of which worker steer : median {1000 * statistics.median(results['worker_s']):7.0f} ms")
    print(f"  slice scroll -> frame   : median {scroll:7.0f} ms   p90 {_p90(results['scroll']):7.0f} ms   (baseline)")
    print(f"  ratio steering / scroll : {steer / scroll:.1f}x")


if __name__ == "__main__":
    main()
