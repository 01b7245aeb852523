"""Steering updates for the page, latest wins: a labelled preview first where the network needs one, then the
exact result.

Every change of the steering controls calls `SteerUpdates.request` with the new spec. The request goes to the
worker's `steer` job with `exact: false`: for a network with instance norm after the hooked layer (the U-Net)
the worker freezes the norm statistics and recomputes only what the region reaches, and labels the result a
preview; once the preview is shown the exact job for the same spec follows. Other networks get the exact
result at once (`preview: false`) and nothing follows.

A preview pays only where it is cheaper than the exact job: when the region reaches (nearly) every window, the
frozen-norm crops cover whole windows and run one by one, and can be slower than the exact job's batched
windows (docs/steering.md measured 0.89 s preview vs 0.50 s exact for one trained U-Net, tumour + 10 mm). So
for each case and region the jobs' own timings (their `seconds`) decide: once the previews so far took, in
total, at least as long as the exact jobs that followed them, later requests for that region go straight to
the exact job (totals, so that one slow preview on a busy machine does not switch previews off).

All these jobs share one slot of `WorkerJobs` ("steer"): while one runs, a newer request replaces the waiting
one and the running one's result is dropped, and a result for a spec that is no longer the latest is never
shown and never followed up. A drag of any number of slider events therefore runs at most the job in flight
plus the last position's preview and exact jobs. The exact job starts only once the preview has been shown
for `EXACT_HOLD_S` with the controls at rest (`_follow_up`), so a drag runs previews only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from .jobs import WorkerJobs

SLOT = "steer"
EXACT_HOLD_S = 0.4  # a shown preview stays this long, controls at rest, before its exact job starts


class SteerUpdates:
    """Sends steering specs to the worker and shows each result that is still wanted."""

    def __init__(self, jobs: WorkerJobs, show: Callable[[dict], None], exact_hold_s: float = EXACT_HOLD_S):
        self._jobs = jobs
        self._show = show
        self._exact_hold_s = exact_hold_s
        self._latest: tuple[dict, dict] | None = None
        self._pair_seconds: dict[tuple, list[float]] = {}  # per (case, region): summed [preview, exact] job seconds

    @property
    def latest(self) -> dict | None:
        """The spec of the latest request (None after `forget`)."""
        return None if self._latest is None else self._latest[0]

    def request(self, spec: dict, params: dict) -> None:
        """Steer with `spec` (the `steer` job's other parameters, e.g. the case, in `params`); replaces any
        earlier request."""
        self._latest = (spec, params)
        self._submit(spec, params, exact=not self._preview_pays(_region_key(spec, params)))

    def _preview_pays(self, key: tuple) -> bool:
        """Whether the previews of this case and region were, in total, faster than the exact jobs after them."""
        preview, exact = self._pair_seconds.get(key, (0.0, 1.0))
        return preview < exact

    def forget(self) -> None:
        """Show nothing more from requests made so far (the sliders went back to neutral, or the case changed)."""
        self._latest = None

    def _submit(self, spec: dict, params: dict, exact: bool, preview_seconds: float | None = None) -> None:
        def done(result: dict) -> None:
            if preview_seconds is not None:
                pair = self._pair_seconds.setdefault(_region_key(spec, params), [0.0, 0.0])
                pair[0] += preview_seconds
                pair[1] += result["seconds"]
            if (spec, params) != self._latest:
                return  # the controls (or the case) moved on since this request
            self._show(result)
            if result.get("preview"):
                self._follow_up(spec, params, result["seconds"])

        label = "steering: exact result" if preview_seconds is not None else "steering"
        self._jobs.submit("steer", {**params, "spec": spec, "exact": exact}, label, done, slot=SLOT)

    def _follow_up(self, spec: dict, params: dict, preview_seconds: float) -> None:
        """The exact job after a shown preview, once the preview has been shown for `exact_hold_s` and the controls
        have not moved. Showing the preview woke the views' render tasks: trame draws each view, encodes it in a
        thread and re-encodes it at a higher quality five frame periods later. An exact job started on the event
        loop's next turn took the CPU from that on a 2-core machine (docs/viewer.md: first steered frame 0.65 s
        median, 0.49 s with the 0.4 s hold, the exact frame no later); held, a drag starts no exact job at all
        until the slider rests."""

        def submit() -> None:
            if (spec, params) == self._latest:
                self._submit(spec, params, exact=True, preview_seconds=preview_seconds)

        loop = asyncio.get_running_loop()
        if self._exact_hold_s > 0:
            loop.call_later(self._exact_hold_s, submit)
        else:  # on the next turn, after the render tasks that showing the preview woke
            loop.call_soon(submit)


def _region_key(spec: dict, params: dict) -> tuple:
    return params.get("case"), json.dumps(spec.get("region"), sort_keys=True)
