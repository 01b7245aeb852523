"""Slider events while a steer runs queue no work: the viewer's job queue and steering updates, with a stand-in
worker that runs nothing until the test finishes a job (no browser, no processes, no sleeps).

A drag sends one request per slider event; the worker runs one job at a time. What must hold: a burst of 20
events runs the job already in flight plus the last position only (its preview, then its exact job), the page
shows results of the last position only, a preview is followed by the exact job (once the views drew it) and an
exact result by nothing, previews that cost more in total than their exact jobs are skipped for that region, and
an exact job waits until a shown preview has stood for its hold with the controls at rest.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from conftest import WAIT_S

from MedSegLensLib.viewer.jobs import WorkerJobs
from MedSegLensLib.viewer.steer_updates import SteerUpdates
from MedSegLensLib.worker import Message

PARAMS = {"model": "m", "sae": "s", "case": "c"}


class StandInWorker:
    """What `WorkerJobs` needs of `WorkerProcess`; jobs finish only when the test says so."""

    def __init__(self):
        self.submitted: list[tuple[str, dict]] = []
        self._callbacks: dict[str, object] = {}

    def submit(self, job: str, params: dict, callback) -> str:
        request = str(len(self.submitted))
        self.submitted.append((job, params))
        self._callbacks[request] = callback
        return request

    def finish(self, preview: bool, seconds: float | None = None) -> None:
        """The job in flight (the last one submitted) returns a steering result for its spec: a preview when the
        network has one (`preview`) and the job asked for it; by default a preview takes 0.2 s, exact 0.5 s."""
        request = str(len(self.submitted) - 1)
        _, params = self.submitted[-1]
        is_preview = preview and not params["exact"]
        data = {"spec": params["spec"], "preview": is_preview, "seconds": seconds or (0.2 if is_preview else 0.5)}
        self._callbacks.pop(request)(Message("result", request, {"data": data}))

    def poll(self) -> None:
        pass

    def release(self, request: str) -> None:
        pass

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass


async def finish(worker: StandInWorker, preview: bool, seconds: float | None = None) -> None:
    """Finish the job in flight, then let the event loop turn once (a follow-up job is submitted on the next turn,
    after the views' render tasks that showing a result woke)."""
    worker.finish(preview, seconds)
    await asyncio.sleep(0)


def spec(strength: float) -> dict:
    return {"latents": [3], "strengths": [strength], "mode": "additive", "region": {"kind": "tumour-margin"}}


class State(SimpleNamespace):
    """Stands in for trame's state: attributes, `update` and the `with state:` block the job pump uses."""

    def update(self, values: dict) -> None:
        self.__dict__.update(values)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False


def steering(worker: StandInWorker, exact_hold_s: float = 0.0) -> tuple[SteerUpdates, list[dict]]:
    server = SimpleNamespace(state=State(), controller=SimpleNamespace(on_server_exited=set()))
    shown: list[dict] = []
    jobs = WorkerJobs(server, workspace_root=None, say=lambda *_: None, worker=worker)
    return SteerUpdates(jobs, shown.append, exact_hold_s=exact_hold_s), shown


def ran(worker: StandInWorker) -> list[tuple[float, bool]]:
    """(strength, exact) of each job the worker was given."""
    return [(params["spec"]["strengths"][0], params["exact"]) for _, params in worker.submitted]


def test_a_burst_of_slider_events_runs_the_job_in_flight_and_the_last_position_only():
    async def drag():
        worker = StandInWorker()
        updates, shown = steering(worker)
        for step in range(20):  # one drag: 20 slider events while the first one's preview runs
            updates.request(spec(0.1 * (step + 1)), PARAMS)
        assert ran(worker) == [(0.1, False)], "later events wait (one place, latest wins) instead of queueing jobs"
        await finish(worker, preview=True)  # the first position's preview: stale, neither shown nor followed up
        assert shown == [] and ran(worker) == [(0.1, False), (2.0, False)]
        worker.finish(preview=True)  # the last position's preview: shown; its exact job follows on the next turn
        assert len(worker.submitted) == 2, "the exact job waits until the views drew the preview"
        await asyncio.sleep(0)
        assert [r["spec"]["strengths"] for r in shown] == [[2.0]] and ran(worker)[-1] == (2.0, True)
        await finish(
            worker, preview=True
        )  # the exact result (the worker returns preview false): shown, nothing follows
        assert [r["preview"] for r in shown] == [True, False]
        steer_jobs = ran(worker)
        assert len(steer_jobs) == 3 and len({strength for strength, _ in steer_jobs}) == 2, (
            "20 events ran the job in flight plus the last position (preview and exact)"
        )

        worker = StandInWorker()  # a network whose first result is already exact (no preview): two jobs in all
        updates, shown = steering(worker)
        for step in range(20):
            updates.request(spec(0.1 * (step + 1)), PARAMS)
        await finish(worker, preview=False)
        await finish(worker, preview=False)
        assert ran(worker) == [(0.1, False), (2.0, False)] and [r["spec"]["strengths"] for r in shown] == [[2.0]]

    asyncio.run(drag())


def test_an_exact_job_in_flight_is_superseded_and_a_network_without_a_preview_gets_one_job_per_position():
    async def drag():
        worker = StandInWorker()
        updates, shown = steering(worker)
        updates.request(spec(1.0), PARAMS)
        await finish(worker, preview=True)  # preview of 1.0 shown, its exact job runs
        updates.request(spec(2.0), PARAMS)  # the slider moves while the exact job of 1.0 runs
        updates.request(spec(3.0), PARAMS)
        await finish(worker, preview=True)  # 1.0's exact result arrives after the controls moved on: not shown
        assert [r["spec"]["strengths"] for r in shown] == [[1.0]]
        assert ran(worker) == [(1.0, False), (1.0, True), (3.0, False)], "2.0 never ran"
        await finish(worker, preview=False)  # e.g. the SegFormer: the first result is already exact
        assert [(r["spec"]["strengths"], r["preview"]) for r in shown] == [([1.0], True), ([3.0], False)]
        assert len(worker.submitted) == 3, "an exact result is not followed up"
        updates.forget()  # back to neutral: nothing in flight may be shown any more
        updates.request(spec(4.0), PARAMS)
        updates.forget()
        await finish(worker, preview=True)
        assert len(shown) == 2 and len(worker.submitted) == 4

    asyncio.run(drag())


def test_previews_slower_in_total_than_their_exact_jobs_are_skipped_for_that_region():
    async def drag():
        worker = StandInWorker()
        updates, shown = steering(worker)
        for strength, preview_s in ((1.0, 0.2), (2.0, 0.6)):  # one slow preview (a busy moment) after a fast one
            updates.request(spec(strength), PARAMS)
            await finish(worker, preview=True, seconds=preview_s)
            await finish(worker, preview=True, seconds=0.5)
        updates.request(spec(3.0), PARAMS)
        assert ran(worker)[-1] == (3.0, False), "previews so far 0.8 s in total against 1.0 s exact: still worth it"
        await finish(worker, preview=True, seconds=0.9)  # a region reaching every window: the crops cost more
        await finish(worker, preview=True, seconds=0.5)
        updates.request(spec(4.0), PARAMS)
        assert ran(worker)[-1] == (4.0, True), "1.7 s of previews against 1.5 s exact: straight to the exact job"
        await finish(worker, preview=True)
        other = {**spec(5.0), "region": {"kind": "tumour-margin", "margin_mm": 2.0}}
        updates.request(other, PARAMS)
        assert ran(worker)[-1] == (5.0, False), "another region tries the preview again"
        assert [r["preview"] for r in shown] == [True, False] * 3 + [False]

    asyncio.run(drag())


def test_a_preview_s_exact_job_waits_until_the_controls_rest():
    async def drag():
        loop = asyncio.get_running_loop()
        worker = StandInWorker()
        updates, shown = steering(worker, exact_hold_s=0.05)
        updates.request(spec(1.0), PARAMS)
        worker.finish(preview=True)  # 1.0's preview shown: its exact job is held
        await asyncio.sleep(0)
        assert ran(worker) == [(1.0, False)], "no exact job on the next turn: the preview's frames come first"
        updates.request(spec(2.0), PARAMS)  # the slider moves on within the hold
        worker.finish(preview=True)
        deadline = loop.time() + WAIT_S
        while len(worker.submitted) < 3:  # 2.0's exact job, once its own hold has passed
            assert loop.time() < deadline, "the exact job never followed the preview"
            await asyncio.sleep(0.01)
        assert ran(worker) == [(1.0, False), (2.0, False), (2.0, True)], "1.0's exact job never ran"
        assert [r["spec"]["strengths"] for r in shown] == [[1.0], [2.0]]

    asyncio.run(drag())
