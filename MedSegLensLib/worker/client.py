"""`WorkerProcess`: drive the worker from Slicer, the browser viewer, the CLI and tests.

Nothing here blocks a GUI thread: reader threads put the worker's lines on a
queue and `poll()` (called from a Qt timer, or in a loop) turns them into
`Message`s and runs callbacks on the caller's thread. Each request gets its own
output folder in a per-session temp folder; when a request fails, is cancelled
or the worker crashes, that folder is deleted, so no partial output survives.
Cancel kills the whole process tree; the next request starts a fresh worker.
An event loop need not poll on a short timer to answer promptly: `on_output` is called from the reader thread
when a line that may finish a request arrives (or the worker exits), e.g. to wake the loop's pump at once.
"""

from __future__ import annotations

import collections
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import errors
from . import protocol
from .process_tree import IS_WINDOWS, describe_exit, kill_tree, new_group_kwargs
from .protocol import Message

Callback = Callable[[Message], None]
# Lines that never finish a request, as the worker encodes them (`protocol.encode`): no need to wake a poller.
CHATTER_PREFIXES = ('{"type":"progress"', '{"type":"log"')
LIBRARY_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds MedSegLensLib/


class WorkerError(errors.MedSegLensError):
    """A job failed in the worker, or the worker died; `kind` names the remote error class."""

    def __init__(self, message: str, kind: str = "WorkerError"):
        super().__init__(message)
        self.kind = kind


def raise_for(message: Message) -> None:
    """Raise the error a terminal error/cancelled message stands for (same class when known)."""
    if message.type == "cancelled":
        raise errors.CancelledError(message.message or "cancelled")
    kind = str(message.fields.get("kind", "WorkerError"))
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, errors.MedSegLensError):
        raise cls(message.message)
    raise WorkerError(message.message, kind)


def default_python() -> str:
    """PythonSlicer inside desktop Slicer (`sys.executable` is Slicer itself there), else this Python."""
    slicer = sys.modules.get("slicer")
    if slicer is not None and hasattr(slicer, "app"):
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


@dataclass
class _Pending:
    job: str
    output_dir: Path


class WorkerProcess:
    """A lazily started, long-lived worker with a non-blocking message pump.

    python: interpreter for the worker (default: `default_python()`).
    env: base environment (inside Slicer pass `slicer.util.startupEnvironment()`);
      the library's folder is prepended to PYTHONPATH.
    job_modules: extra job modules to load (`--jobs`).
    threads: CPU threads for torch in the worker (0: torch's default).
    command: a full command line to run instead of the worker (anything speaking the protocol).
    on_output: called (from a reader thread, without arguments) when a line that may finish a request arrives or
      the worker exits; `poll()` still delivers the messages. Progress and log lines do not call it.
    """

    def __init__(
        self,
        python: str | None = None,
        *,
        env: dict[str, str] | None = None,
        job_modules: Sequence[str] = (),
        threads: int = 0,
        command: Sequence[str] | None = None,
        on_output: Callable[[], None] | None = None,
    ) -> None:
        self.python = python or default_python()
        self.base_env = dict(os.environ if env is None else env)
        self.job_modules = list(job_modules)
        self.threads = threads
        self.command = list(command) if command else None
        self.on_output = on_output
        self.ready: Message | None = None
        self._proc: subprocess.Popen | None = None
        self._generation = 0
        self._events: queue.Queue = queue.Queue()
        self._outbox: list[Message] = []
        self._pending: dict[str, _Pending] = {}
        self._callbacks: dict[str, Callback] = {}
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._last_worker_error = ""
        self._expect_exit = False
        self._counter = 0
        self._session_dir: Path | None = None
        self._finalizer: weakref.finalize | None = None

    # -- lifecycle -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def busy(self) -> bool:
        """True while any request is waiting for its result."""
        return bool(self._pending)

    @property
    def session_dir(self) -> Path:
        if self._session_dir is None:
            self._session_dir = Path(tempfile.mkdtemp(prefix="medseglens-session-"))
        return self._session_dir

    def worker_command(self) -> list[str]:
        if self.command:
            return list(self.command)
        cmd = [self.python, "-u", "-m", "MedSegLensLib.worker"]
        for module in self.job_modules:
            cmd += ["--jobs", module]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        if not IS_WINDOWS:
            cmd += ["--parent-pid", str(os.getpid())]
        return cmd

    def worker_env(self) -> dict[str, str]:
        env = dict(self.base_env)
        paths = [str(LIBRARY_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        return env

    def start(self) -> None:
        """Start the worker if it is not running (requests also start it)."""
        if self.running:
            return
        self._generation += 1
        self._expect_exit = False
        self._stderr_tail.clear()
        self._last_worker_error = ""
        self.ready = None
        try:
            proc = subprocess.Popen(
                self.worker_command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.worker_env(),
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                **new_group_kwargs(),
            )
        except OSError as exc:
            raise WorkerError(
                f"cannot start the worker with {self.worker_command()[0]}: {exc.strerror or exc}"
            ) from None
        self._proc = proc
        self._finalizer = weakref.finalize(self, kill_tree, proc, 2.0)
        generation = self._generation
        err_thread = threading.Thread(target=self._read_stderr, args=(proc, generation), daemon=True)
        out_thread = threading.Thread(target=self._read_stdout, args=(proc, generation, err_thread), daemon=True)
        err_thread.start()
        out_thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Ask an idle worker to stop (a busy one is killed at once) and delete the session folder."""
        proc = self._proc
        if proc is not None and proc.poll() is None and not self._pending:
            self._expect_exit = True
            try:
                proc.stdin.write(protocol.encode({"id": None, "job": "shutdown"}) + "\n")
                proc.stdin.flush()
                proc.stdin.close()
                proc.wait(timeout)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        self._stop_process("closed")
        if self._session_dir is not None:
            shutil.rmtree(self._session_dir, ignore_errors=True)
            self._session_dir = None

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------

    def submit(self, job: str, params: dict[str, Any] | None = None, callback: Callback | None = None) -> str:
        """Send a request (starting the worker if needed); return its id at once."""
        self.start()
        self._counter += 1
        request_id = str(self._counter)
        output_dir = self.session_dir / request_id
        output_dir.mkdir(parents=True, exist_ok=True)
        self._pending[request_id] = _Pending(job, output_dir)
        if callback is not None:
            self._callbacks[request_id] = callback
        line = protocol.Request(request_id, job, dict(params or {}), str(output_dir)).to_line()
        try:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
        except (OSError, ValueError):
            pass  # the worker is gone; its exit event reports the failure to this request
        return request_id

    def output_dir(self, request_id: str) -> Path:
        return self.session_dir / request_id

    def release(self, request_id: str) -> None:
        """Delete a finished request's output folder once its files have been used."""
        shutil.rmtree(self.session_dir / request_id, ignore_errors=True)

    def cancel(self) -> None:
        """Kill the worker tree now; every pending request gets a "cancelled" message on the next poll."""
        if self._proc is None and not self._pending:
            return
        self._stop_process("cancelled")

    def poll(self, timeout: float = 0.0, max_events: int = 1000) -> list[Message]:
        """Return the messages that arrived (waiting at most `timeout` s for the first) and run callbacks.

        At most `max_events` lines are handled per call, so a chatty worker cannot stall a GUI timer.
        """
        messages, self._outbox = self._outbox, []
        block = timeout > 0 and not messages
        for _ in range(max_events):
            try:
                event = self._events.get(block=block, timeout=timeout if block else None)
            except queue.Empty:
                break
            block = False
            messages.extend(self._handle(event))
            messages.extend(self._outbox)
            self._outbox = []
        for message in messages:
            self._dispatch(message)
        return messages

    def wait(self, request_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until `request_id` finishes; return its result data or raise its error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = 0.5 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"worker request {request_id} did not finish within {timeout} s")
            for message in self.poll(timeout=min(remaining, 0.5)):
                if message.id == request_id and message.terminal:
                    if message.type == "result":
                        return message.data
                    raise_for(message)

    def run(
        self,
        job: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        callback: Callback | None = None,
    ) -> dict[str, Any]:
        """Submit and wait (for scripts, the CLI and tests)."""
        return self.wait(self.submit(job, params, callback), timeout)

    # -- internals -----------------------------------------------------------------

    def _read_stdout(self, proc: subprocess.Popen, generation: int, err_thread: threading.Thread) -> None:
        for line in proc.stdout:
            self._events.put((generation, "line", line.rstrip("\r\n")))
            if not line.startswith(CHATTER_PREFIXES):
                self._notify()
        returncode = proc.wait()
        err_thread.join(timeout=2.0)  # so the crash report sees the last stderr lines
        self._events.put((generation, "exit", returncode))
        self._notify()

    def _notify(self) -> None:
        on_output = self.on_output
        if on_output is not None:
            on_output()

    def _read_stderr(self, proc: subprocess.Popen, generation: int) -> None:
        for line in proc.stderr:
            self._events.put((generation, "stderr", line.rstrip("\r\n")))

    def _handle(self, event: tuple[int, str, Any]) -> list[Message]:
        generation, kind, payload = event
        if generation != self._generation:
            return []  # from a worker that was already cancelled or replaced
        if kind == "stderr":
            if payload.strip():
                self._stderr_tail.append(payload)
            return [Message("log", self._running_id(), {"level": "stderr", "message": payload})]
        if kind == "exit":
            if self._expect_exit:
                return []
            self._crash(f"the worker {describe_exit(payload)}")
            return []
        try:
            message = protocol.parse_message(payload)
        except protocol.ProtocolError as exc:
            self._crash(f"the worker broke the protocol: {exc}")
            return []
        if message.type == "ready":
            self.ready = message
        elif message.type == "error" and message.id is None and message.fields.get("kind") == "StartupError":
            self._last_worker_error = message.message
        if message.terminal and message.id in self._pending:
            pending = self._pending.pop(message.id)
            if message.type != "result":
                shutil.rmtree(pending.output_dir, ignore_errors=True)
        return [message]

    def _running_id(self) -> str | None:
        return next(iter(self._pending), None)

    def _crash(self, reason: str) -> None:
        detail = self._last_worker_error or (self._stderr_tail[-1] if self._stderr_tail else "")
        self._stop_process("error", reason + (f"; last output: {detail}" if detail else ""))

    def _stop_process(self, outcome: str, reason: str = "") -> None:
        """Kill the tree, forget its events and finish every pending request with `outcome`."""
        proc, self._proc = self._proc, None
        self._generation += 1
        if proc is not None:
            kill_tree(proc)
            try:
                proc.stdin.close()  # the reader threads end by themselves at EOF
            except (OSError, ValueError):
                pass
            if self._finalizer is not None:
                self._finalizer.detach()
        pending, self._pending = self._pending, {}
        for request_id, item in pending.items():
            shutil.rmtree(item.output_dir, ignore_errors=True)
            if outcome == "cancelled":
                self._outbox.append(Message("cancelled", request_id, {"message": f"{item.job} was cancelled"}))
            elif outcome == "error":
                text = protocol.one_line(f"{reason} while running {item.job!r}")
                self._outbox.append(Message("error", request_id, {"kind": "WorkerCrashed", "message": text}))

    def _dispatch(self, message: Message) -> None:
        if message.id is None:
            return
        callback = self._callbacks.pop(message.id, None) if message.terminal else self._callbacks.get(message.id)
        if callback is not None:
            callback(message)
