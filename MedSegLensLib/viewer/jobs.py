"""Long jobs for the viewer, run by the shared background worker (`MedSegLensLib.worker`).

The page never waits on a job: `WorkerJobs.submit` sends the request and returns;
an asyncio task on trame's loop polls the worker's messages and turns them into
the progress bar's state; the result (files the worker wrote) is handed to a
callback on the same thread as the scene. Cancel kills the worker's process tree;
nothing in the scene changes unless a job finishes. The worker's scratch files
live under the workspace's `.scratch/` folder and are deleted once used.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import MedSegLensError, OutputError, ParameterError
from ..worker import Message, WorkerProcess, raise_for

SCRATCH_DIR = ".scratch"
POLL_SECONDS = 0.1
WORKER_THREADS = 2


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
                raise OutputError(f"{self._scratch_root}: cannot write the worker's scratch files ({exc.strerror})") from None
        return self._session_dir


class WorkerJobs:
    """One job at a time, with its progress in the page's state (`job_*` keys)."""

    def __init__(self, server, workspace_root: Path, say: Callable[[str, bool], None]):
        self.state = server.state
        self._say = say
        self._worker = WorkspaceWorker(workspace_root / SCRATCH_DIR, threads=WORKER_THREADS)
        self._request: str | None = None
        self._on_result: Callable[[dict], None] | None = None
        self._label = ""
        self.state.job_running = False
        self.state.job_progress = None
        self.state.job_text = ""
        server.controller.cancel_job = self.cancel
        server.controller.on_server_exited.add(lambda **_: self.close())

    @property
    def running(self) -> bool:
        return self._request is not None

    def submit(self, job: str, params: dict, label: str, on_result: Callable[[dict], None]) -> None:
        if self.running:
            raise ParameterError(f"{self._label} is still running; wait for it or cancel it")
        self._label, self._on_result = label, on_result
        self._request = self._worker.submit(job, params, callback=self._on_message)
        self.state.update({"job_running": True, "job_progress": 0, "job_text": f"{label}: starting the worker"})
        asyncio.get_event_loop().create_task(self._pump())

    def cancel(self) -> None:
        if self.running:
            self._worker.cancel()

    def close(self) -> None:
        self._worker.close()

    def poll(self) -> None:
        """Deliver the worker's messages (the pump calls this; tests may too)."""
        self._worker.poll()

    async def _pump(self) -> None:
        while self.running:
            with self.state:
                self.poll()
            await asyncio.sleep(POLL_SECONDS)

    def _on_message(self, message: Message) -> None:
        if message.type == "progress":
            self.state.job_progress = round(100 * message.fraction)
            self.state.job_text = f"{self._label}: {message.message}"
            return
        if not message.terminal:
            return
        request, on_result = self._request, self._on_result
        self._request = self._on_result = None
        self.state.update({"job_running": False, "job_progress": None, "job_text": ""})
        try:
            if message.type != "result":
                raise_for(message)
            on_result(message.data)
        except MedSegLensError as exc:
            self._say(f"{self._label}: {exc}", True)
        finally:
            self._worker.release(request)
