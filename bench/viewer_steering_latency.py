"""Steering latency seen in the browser: a strength slider moves -> the steered segmentation's frames arrive.

    python bench/viewer_steering_latency.py --workspace DIR [--case ID] [--latent J] [--repeats N]
                                            [--screenshot PNG]

DIR is a viewer workspace with a model and an SAE, e.g. the demo's (~/.cache/medseglens/demo after
`python3 dev.py demo`). The case defaults to the workspace's first failure case (opened with `--case`), the latent to
the case's first latent map when it is steerable, else the first steerable latent of the analysis. It starts
`medseglens serve` on 127.0.0.1 and drives Debian's headless Chromium (1600x900). In one page it times, over
repeats, inside the page:

- slice redraw (baseline): a key press on the axial view's slice slider until that view's next frame
  (render + encode + stream of one view);
- slider -> first steered frame: a key press on the steering slider (alternately Home and End: the two ends of the
  strength range, so every press steers anew) until the axial view shows the first frame drawn after the page
  learned that a result for the new strength is shown (preview or exact, `#steer-summary`'s `data-strengths`);
- slider -> exact frame: the same, until the first frame after the exact result is shown (the same frame when
  the first result was already exact).

The viewer redraws only the views a result's change crosses (`#steer-summary`'s `data-views`); a result whose
change misses the axial slice leaves that view's picture as it was, already right, so it is timed until the page
has the result, and counted apart.

A frame that arrives before the page's state says what it shows is not counted; the next one is (trame
re-sends each picture at a higher quality ~0.17 s later), so the steering figures err on the slow side. Each
measurement starts once the axial view's picture has not changed for 1 s (under load a re-sent picture could
arrive more than 0.4 s after the one before and pass for a 10-36 ms redraw).
Prints best and median of each, their ratios to the slice redraw (best vs best, median vs median), how often
the first frame was a preview, and the worker's own update seconds (the summary's) for the first and the exact
job. The viewer skips previews for a region where one took as long as its exact job (viewer/steer_updates.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from MedSegLensLib.viewer import browser  # noqa: E402
from MedSegLensLib.viewer.jobs import WORKER_THREADS  # noqa: E402
from MedSegLensLib.viewer.latent_panel import worker_map_name  # noqa: E402
from MedSegLensLib.viewer.workspace import read_workspace  # noqa: E402

GOAL_SECONDS = 1.0
GOAL_RATIO = 2.0
ANALYSIS_TIMEOUT_MS = 600000
STEER_BUTTONS = "#latent-table [id^='steer-']"
QUIET_MS = 1000  # trame re-sends a picture at a higher quality 5 frame periods later, encoded after a render

# Times, inside the page, a key press on `selector` until the axial view's first frame after the steering
# summary shows strengths other than the ones shown before the press: once for any result (preview or exact),
# once for the exact result. Resolves {preview, exact, preview_s, exact_s} (ms, ms, worker s, worker s).
STEER_FRAMES = (
    "async ([selector, key, timeout]) => { "
    + browser.FIND_IMAGE
    + """
      const summary = () => document.getElementById('steer-summary');
      const before = summary().dataset.strengths;
      const target = document.querySelector(selector);
      if (!target) throw new Error('no element ' + selector);
      return await new Promise((resolve, reject) => {
        const start = performance.now();
        const got = {};
        const seen = {};
        const check = () => {
          const s = summary(); const img = findImage('axial');
          const src = img && img.complete && img.naturalWidth > 0 ? img.src : null;
          const now = performance.now() - start;
          if (s.dataset.strengths !== before) {
            for (const kind of ['preview', 'exact']) {
              if (kind === 'exact' && s.dataset.kind !== 'exact') continue;
              if (!(kind in seen)) {
                seen[kind] = src; got[kind + '_s'] = parseFloat(s.dataset.seconds);
                if (!('first_kind' in got)) got.first_kind = s.dataset.kind;
                // a result that left the axial view as it was (its change misses the slice): already shown
                if (!(s.dataset.views || '').split(' ').includes('axial')) {
                  got[kind] = now; got[kind + '_kept'] = true; } }
              else if (!(kind in got) && src !== seen[kind]) got[kind] = now;
            }
          }
          if ('exact' in got) { resolve(got); return; }
          if (now > timeout) { reject(new Error('no exact steered frame after ' + timeout + ' ms')); return; }
          requestAnimationFrame(check);
        };
        target.dispatchEvent(new KeyboardEvent('keydown', { key, bubbles: true }));
        requestAnimationFrame(check);
      }); }"""
)

# Resolves once the axial view's <img> source has not changed for `ms` (trame re-sends a picture at a higher
# quality after a while, sometimes with the same pixels: a frame in flight must not be taken for the next one).
QUIET_FRAMES = (
    "async ([ms]) => { "
    + browser.FIND_IMAGE
    + """
      let src = findImage('axial').src; let since = performance.now();
      return await new Promise((resolve) => {
        const check = () => {
          const now = findImage('axial').src;
          if (now !== src) { src = now; since = performance.now(); }
          if (performance.now() - since > ms) { resolve(); return; }
          requestAnimationFrame(check);
        };
        requestAnimationFrame(check);
      }); }"""
)


def pick_case(workspace: Path, case_id: str | None) -> tuple[str, dict[int, str]]:
    """The case to time (given, else the workspace's first failure case, as in every earlier run; the server
    opens it with `--case`, since the viewer's own first case follows a triage worklist) and its map latents
    with their overlay names."""
    cases = read_workspace(workspace).cases
    if not cases:
        raise SystemExit(f"{workspace}: the workspace lists no cases")
    if case_id:
        chosen = next((c for c in cases if c.case_id == case_id), None)
        if chosen is None:
            raise SystemExit(f"{workspace}: no case {case_id!r}")
    else:
        chosen = next((c for c in cases if c.failure), cases[0])
    return chosen.case_id, {o.latent: o.name for o in chosen.overlays if o.latent is not None}


def steerable_latents(page) -> list[int]:
    """The latents the page offers to steer (their "steer" buttons in the latent table), in table order."""
    ids = page.eval_on_selector_all(STEER_BUTTONS, "els => els.map(e => e.id)")
    return [int(i.removeprefix("steer-")) for i in ids if i.removeprefix("steer-").isdigit()]


def measure(server_url: str, case_id: str, mapped: dict[int, str], latent: int | None, repeats: int, shot: Path | None):
    from playwright.sync_api import sync_playwright

    results: dict[str, list] = {
        name: []
        for name in ("redraw", "preview", "exact", "preview_s", "exact_s", "first", "preview_kept", "exact_kept")
    }
    with sync_playwright() as playwright, browser.chromium(playwright, viewport=(1600, 900)) as page:
        page.goto(server_url)
        browser.wait_for_frames(page)
        page.wait_for_function(
            "(id) => document.getElementById('case-title').innerText.includes(id)", arg=case_id, timeout=60000
        )
        page.wait_for_function(
            f"() => [...document.querySelectorAll({STEER_BUTTONS!r})].some((e) => /^steer-\\d+$/.test(e.id))",
            timeout=ANALYSIS_TIMEOUT_MS,
        )
        steerable = steerable_latents(page)
        if latent is None:
            latent = next((j for j in mapped if j in steerable), steerable[0])
        elif latent not in steerable:
            raise SystemExit(f"latent {latent} is not active in {case_id}; steerable: {steerable}")
        page.click(f"#steer-{latent}")
        thumb = f"#strength-{latent} .v-slider-thumb"
        page.wait_for_selector(thumb)
        page.evaluate(STEER_FRAMES, [thumb, "End", ANALYSIS_TIMEOUT_MS])  # warm-up: opens the steering session
        slice_thumb = "#slider-axial .v-slider-thumb"
        for index in range(repeats):
            page.wait_for_selector("#cancel-job", state="hidden")
            page.evaluate(QUIET_FRAMES, [QUIET_MS])
            key = ("ArrowRight", "ArrowLeft")[index % 2]
            results["redraw"].append(browser.frame_latency_ms(page, "axial", slice_thumb, key=key))
            page.evaluate(QUIET_FRAMES, [QUIET_MS])
            got = page.evaluate(STEER_FRAMES, [thumb, ("Home", "End")[index % 2], 120000])
            for name in ("preview", "exact", "preview_s", "exact_s"):
                results[name].append(got[name])
            for name in ("preview_kept", "exact_kept"):
                results[name].append(bool(got.get(name)))
            results["first"].append(got["first_kind"])
        page.wait_for_selector("#cancel-job", state="hidden")
        if shot is not None:  # the steered segmentation, then with the steered latent's map over it
            browser.settled_pixels(page, "axial", quiet_ms=800)
            browser.save_screenshot(page, shot)
            row = mapped.get(latent) or worker_map_name(latent)  # the latent table's row: overlay-<its name>
            page.click(f'[id="overlay-{row}"]')
            page.wait_for_selector("#overlay-legend", timeout=120000)
            browser.settled_pixels(page, "axial", quiet_ms=800)
            browser.save_screenshot(page, shot.with_name(shot.stem + "-map" + shot.suffix))
    return latent, results


def row(name: str, values: list[float], redraw: list[float]) -> str:
    best, median = min(values), statistics.median(values)
    ratios = f"{best / min(redraw):5.1f}x  {median / statistics.median(redraw):5.1f}x"
    return f"  {name:<28} {best:7.0f} ms {median:7.0f} ms   {ratios}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True, help="a workspace whose index lists a model and SAE")
    parser.add_argument("--case", help="case to open (default: the workspace's first failure case)")
    parser.add_argument("--latent", type=int, help="latent to steer (default: the case's first steerable map)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--screenshot", type=Path, help="save the page after the last steer (PNG), and with the latent's map (-map)"
    )
    args = parser.parse_args()
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    case_id, mapped = pick_case(args.workspace, args.case)
    with browser.viewer_server(args.workspace, env=env, timeout=300, extra_args=("--case", case_id)) as server:
        latent, r = measure(server.url, case_id, mapped, args.latent, args.repeats, args.screenshot)
    print(
        f"steering latency in Chromium: {args.workspace}, case {case_id}, latent {latent}, {args.repeats} repeats, "
        f"worker with {WORKER_THREADS} torch threads, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    print(f"  {'':<28} {'best':>10} {'median':>10}   × redraw (best, median)")
    print(row("slice redraw (baseline)", r["redraw"], r["redraw"]))
    previews = r["first"].count("preview")
    print(row("slider -> first steered frame", r["preview"], r["redraw"]))
    print(row("slider -> exact frame", r["exact"], r["redraw"]))
    print(f"    the first frame was a labelled preview in {previews} of {args.repeats} repeats (else already exact)")
    for kind in ("preview", "exact"):
        kept = sum(r[kind + "_kept"])
        if kept:
            print(
                f"    {kept} {'first' if kind == 'preview' else 'exact'} results left the axial slice as it was (their "
                "change misses it; the view is not redrawn): timed until the page had the result"
            )
    for kind, values in (("first", r["preview_s"]), ("exact", r["exact_s"])):
        best, median = 1000 * min(values), 1000 * statistics.median(values)
        print(f"    worker's {kind} job, its own update time: best {best:.0f} ms, median {median:.0f} ms")
    first = min(r["preview"])
    met = first <= 1000 * GOAL_SECONDS and first <= GOAL_RATIO * min(r["redraw"])
    print(
        f"  goal (first steered frame <= {GOAL_SECONDS:.1f} s and <= {GOAL_RATIO:g}x redraw, best vs best): "
        + ("met" if met else "not met")
    )


if __name__ == "__main__":
    main()
