"""Long jobs for the viewer, run by the shared background worker (`MedSegLensLib.worker`).

The page never waits on a job: `WorkerJobs.submit` queues the request and returns;
an asyncio task on trame's loop polls the worker's messages and turns them into
the progress bar's state; the result (files the worker wrote) is handed to a
callback on the same thread as the scene. The task polls every `POLL_SECONDS`
for progress, and at once when the worker's reader thread sees a line that may
end a job (`WorkerProcess.on_output`): a result does not wait for the timer.
A job's progress steps reach the page only once it has run for
`PROGRESS_AFTER_SECONDS`: the page re-renders on every state change (15-40 ms
of a shared core in headless Chromium), and a steering preview of ~0.1 s sent
three such changes while the worker computed.

The worker runs one job at a time, so requests wait in a queue with one place
per *slot*: a newer request of a slot (a latent map, a steering preview)
replaces the waiting one, and the result of a running request is dropped when a
newer one of its slot waits; dragging a slider never piles up work and the page
always ends on the latest request.
Cancel kills the worker's process tree and empties the queue; nothing in the
scene changes unless a job finishes. The worker's scratch files live under the
workspace's `.scratch/` folder and are deleted once used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import MedSegLensError, OutputError
from ..worker import Message, WorkerProcess, raise_for

SCRATCH_DIR = ".scratch"
POLL_SECONDS = 0.02  # progress reaches the page at most this often; results wake the pump at once
PROGRESS_AFTER_SECONDS = 0.25  # a shorter job shows "starting" until its result, without progress steps
WORKER_THREADS = 2
# Idle OpenMP threads sleep instead of spinning: on a machine whose cores are busy (the viewer rendering, the
# browser decoding, other users), spinning threads made an exact steering update of a demo-size U-Net 4x slower
# with 2 threads than with 1 (1.6 s vs 0.38 s at load ~8); passive, 2 threads took 0.45 s there, and both cores
# stay usable on an idle machine (docs/viewer.md, "Steering update latency").
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


class WorkspaceWorker(WorkerProcess):
    """The shared worker, with its per-session output folders inside the workspace."""

    def __init__(self, scratch_root: Path, **kwargs):
        super().__init__(**kwargs)
        self._scratch_root = scratch_root

    @property
    def session_dir(self) -> Path:
        if self._session_dir is None:
            try:
                self._scratch_root.mkdir(parents=True, exist_ok=True)
                self._session_dir = Path(tempfile.mkdtemp(prefix="session-", dir=self._scratch_root))
            except OSError as exc:
                raise OutputError(
                    f"{self._scratch_root}: cannot write the worker's scratch files ({exc.strerror})"
                ) from None
        return self._session_dir


@dataclass
class Job:
    slot: str
    job: str
    params: dict
    label: str
    on_result: Callable[[dict], None]
    request: str | None = None
    started: float = 0.0  # time.monotonic() when it was sent to the worker
    progress: tuple[int, str] | None = None  # its latest progress step (percent, text) not yet on the page


class WorkerJobs:
    """The viewer's job queue, with the running job's progress in the page's state (`job_*` keys)."""

    def __init__(
        self, server, workspace_root: Path, say: Callable[[str, bool], None], worker: WorkerProcess | None = None
    ):
        self.state = server.state
        self._say = say
        self._worker = worker or WorkspaceWorker(
            workspace_root / SCRATCH_DIR, threads=WORKER_THREADS, env={**os.environ, **WORKER_ENV}
        )
        self._active: Job | None = None
        self._waiting: list[Job] = []
        self._pumping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived: asyncio.Event | None = None  # set (via the loop) when the worker may have finished a job
        self._worker.on_output = self._wake
        self.state.job_running = False
        self.state.job_progress = None
        self.state.job_text = ""
        server.controller.cancel_job = self.cancel
        server.controller.on_server_exited.add(lambda **_: self.close())

    @property
    def running(self) -> bool:
        return self._active is not None or bool(self._waiting)

    def busy(self, slot: str) -> bool:
        """Whether a request of `slot` runs or waits."""
        return any(job.slot == slot for job in [*([self._active] if self._active else []), *self._waiting])

    def submit(
        self, job: str, params: dict, label: str, on_result: Callable[[dict], None], slot: str | None = None
    ) -> None:
        """Queue a job; it replaces a waiting request of the same slot (default: the job's name)."""
        slot = slot or job
        self._waiting = [waiting for waiting in self._waiting if waiting.slot != slot]
        self._waiting.append(Job(slot, job, params, label, on_result))
        self._next()
        if not self._pumping:
            self._pumping = True
            loop = asyncio.get_event_loop()
            if loop is not self._loop:
                self._loop, self._arrived = loop, asyncio.Event()
            loop.create_task(self._pump())

    def cancel(self) -> None:
        """Kill the worker tree and forget the waiting requests; the views stay as they are."""
        self._waiting = []
        if self._active is not None:
            self._worker.cancel()

    def close(self) -> None:
        self._worker.close()

    def poll(self) -> None:
        """Deliver the worker's messages (the pump calls this; tests may too)."""
        self._worker.poll()

    def _next(self) -> None:
        if self._active is not None or not self._waiting:
            return
        self._active = self._waiting.pop(0)
        self._active.started = time.monotonic()
        self._active.request = self._worker.submit(self._active.job, self._active.params, callback=self._on_message)
        self.state.update({"job_running": True, "job_progress": 0, "job_text": f"{self._active.label}: starting"})

    async def _pump(self) -> None:
        try:
            while self.running:
                self._arrived.clear()
                with self.state:
                    self.poll()
                    if self._active is not None:
                        self._show_progress(self._active)
                if self.running:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._arrived.wait(), POLL_SECONDS)
        finally:
            self._pumping = False

    def _wake(self) -> None:
        """The worker's reader thread saw a line that may end a job: poll on the loop's next turn."""
        loop, arrived = self._loop, self._arrived
        if loop is not None and arrived is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing is waiting any more
                loop.call_soon_threadsafe(arrived.set)

    def _show_progress(self, job: Job) -> None:
        """Put the job's latest progress step on the page once the job has run `PROGRESS_AFTER_SECONDS`."""
        if job.progress is not None and time.monotonic() - job.started >= PROGRESS_AFTER_SECONDS:
            self.state.job_progress, self.state.job_text = job.progress
            job.progress = None

    def _on_message(self, message: Message) -> None:
        job = self._active
        if job is None:
            return
        if message.type == "progress":
            job.progress = (round(100 * message.fraction), f"{job.label}: {message.message}")
            self._show_progress(job)
            return
        if not message.terminal:
            return
        self._active = None
        stale = any(waiting.slot == job.slot for waiting in self._waiting)
        try:
            if message.type != "result":
                raise_for(message)
            if not stale:
                job.on_result(message.data)
        except MedSegLensError as exc:
            if not stale:
                self._say(f"{job.label}: {exc}", True)
        finally:
            self._worker.release(job.request)
            self._next()
            if self._active is None:
                self.state.update({"job_running": False, "job_progress": None, "job_text": ""})
