"""A finished job reaches the viewer without waiting on a timer, short jobs send no progress steps to the page, and
the first view's frame is sent before the other views are drawn (docs/viewer.md, "Steering update latency").

The worker here is the real one (its `count` job from Testing/worker_fault_jobs.py); the views are stand-ins with
the parts of trame-slicer and trame-rca that `FrameOrder` uses. No timings: a missed wake-up would leave the job
pump asleep for an hour, and the test fails at the deadline instead.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from conftest import WAIT_S, fault_jobs_worker

from MedSegLensLib.viewer import jobs as jobs_module
from MedSegLensLib.viewer.frame_order import FrameOrder
from MedSegLensLib.viewer.jobs import WorkerJobs
from MedSegLensLib.worker import WorkerProcess

HOUR = 3600.0


@pytest.fixture
def worker():
    with fault_jobs_worker() as process:
        yield process


class State(SimpleNamespace):
    """Stands in for trame's state, remembering every job text the page was given."""

    def __init__(self):
        super().__init__()
        object.__setattr__(self, "texts", [])

    def __setattr__(self, name, value):
        if name == "job_text":
            self.texts.append(value)
        super().__setattr__(name, value)

    def update(self, values: dict) -> None:
        for name, value in values.items():
            setattr(self, name, value)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False


def run_count(worker: WorkerProcess, steps: int) -> tuple[dict, list[str]]:
    """Run the worker's `count` job through the viewer's job queue; its result and the job texts shown."""
    state = State()
    server = SimpleNamespace(state=state, controller=SimpleNamespace(on_server_exited=set()))
    queue = WorkerJobs(server, workspace_root=None, say=lambda *_: None, worker=worker)

    async def main() -> dict:
        done = asyncio.get_running_loop().create_future()
        queue.submit("count", {"steps": steps, "delay": 0.0}, "counting", done.set_result)
        return await asyncio.wait_for(done, WAIT_S)

    return asyncio.run(main()), state.texts[1:]  # after the queue's own initial ""


def test_the_result_wakes_the_job_pump_at_once_and_progress_lines_do_not(worker, monkeypatch):
    wakes = []
    worker.on_output = lambda: wakes.append(1)
    worker.run("ping", timeout=WAIT_S)  # ready and result: two lines that may end a request
    deadline = time.monotonic() + WAIT_S
    while len(wakes) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.run("count", {"steps": 5, "delay": 0.0}, timeout=WAIT_S)
    while len(wakes) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(wakes) == 3, "one wake per line that may end a request (ready, two results), none for progress"

    monkeypatch.setattr(jobs_module, "POLL_SECONDS", HOUR)  # the timer alone would deliver nothing in time
    monkeypatch.setattr(jobs_module, "PROGRESS_AFTER_SECONDS", HOUR)
    result, texts = run_count(worker, steps=4)
    assert result["steps"] == 4
    assert texts == ["counting: starting", ""], "a job shorter than PROGRESS_AFTER_SECONDS shows no steps"


def test_a_job_that_has_run_long_enough_shows_its_progress(worker, monkeypatch):
    monkeypatch.setattr(jobs_module, "PROGRESS_AFTER_SECONDS", 0.0)
    _, texts = run_count(worker, steps=3)
    assert texts[0] == "counting: starting" and texts[-1] == ""
    assert "counting: step 3 of 3" in texts


class Scheduler:
    """trame-rca's image scheduler as `FrameOrder` sees it: a push callback that sends a view's frame."""

    def __init__(self, sent: list):
        self._push_callback = lambda content, meta: sent.append(content)

    def set_push_callback(self, callback) -> None:
        self._push_callback = callback


class View:
    """A trame-slicer view: a render block, and a render on unblocking (here: a frame pushed at once)."""

    def __init__(self, name: str, renders: list, scheduler: Scheduler | None):
        self.name, self._renders, self.blocked = name, renders, True
        self._scheduled_render = SimpleNamespace(_scheduler=scheduler) if scheduler else None

    def set_render_blocked(self, blocked: bool) -> bool:
        was, self.blocked = self.blocked, blocked
        if not blocked:
            self._renders.append(self.name)
        return was

    def push_frame(self) -> None:
        self._scheduled_render._scheduler._push_callback(self.name, {})


def hold(views: list) -> None:
    """What `CaseDisplay.one_frame` does before a change: every view's redraws held."""
    for view in views:
        view.blocked = True


def test_the_other_views_are_drawn_once_the_first_views_frame_was_sent():
    renders, sent = [], []
    views = [View(name, renders, Scheduler(sent)) for name in ("axial", "coronal", "sagittal")]
    unblocked = {id(view): False for view in views}
    order = FrameOrder()
    order.release(views, unblocked)
    assert renders == ["axial"] and views[1].blocked and views[2].blocked
    views[0].push_frame()
    assert sent == ["axial"] and renders == ["axial", "coronal", "sagittal"]

    hold(views)
    order.release(views[1:], unblocked)  # a change the axial view does not show: the coronal view first
    views[0].push_frame()  # a frame of another view releases nothing
    assert renders[3:] == ["coronal"] and views[2].blocked
    order.release(views[:1], unblocked)  # a new change first releases what the last one held back
    assert renders[4:] == ["sagittal", "axial"] and not any(view.blocked for view in views)

    async def with_the_server() -> None:  # the rest wait until the server has sent the first frame
        network = asyncio.Event()

        async def frames_sent() -> None:
            await network.wait()

        renders.clear()
        hold(views)
        served = FrameOrder(frames_sent)
        served.release(views, unblocked)
        views[0].push_frame()
        await asyncio.sleep(0)
        assert renders == ["axial"]
        network.set()
        for _ in range(3):
            await asyncio.sleep(0)
        assert renders == ["axial", "coronal", "sagittal"]

    asyncio.run(with_the_server())

    renders = []
    direct = [View(name, renders, None) for name in ("axial", "coronal")]  # views that render directly
    FrameOrder().release(direct, {id(view): False for view in direct})
    assert renders == ["axial", "coronal"]
