"""The long-lived worker process behind `python -m MedSegLensLib.worker`.

It keeps models, cases and activations in memory between requests (starting
Python and torch again costs seconds), reads one JSON request per line on stdin
and answers with JSON lines on a private copy of stdout. The real stdout is
pointed at stderr first, so a stray `print` in any library cannot corrupt the
protocol.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from .. import __version__
from ..errors import MedSegLensError
from ..processes import process_alive
from . import protocol
from .registry import JOB_MODULES, JobContext, JobRegistry, WorkerCache


class WorkerServer:
    """Dispatches requests to registered jobs, one at a time."""

    def __init__(self, registry: JobRegistry, out: TextIO) -> None:
        self.registry = registry
        self.out = out
        self.cache = WorkerCache()
        self.stopping = False
        self._lock = threading.Lock()
        registry.add("shutdown", self._shutdown)

    def send(self, obj: dict[str, Any]) -> None:
        self._write(protocol.encode(obj))  # encoded fully before writing: never half a line

    def _write(self, line: str) -> None:
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()

    def serve(self, lines: Iterable[str]) -> int:
        self.send({"type": "ready", "pid": os.getpid(), "version": __version__, "jobs": self.registry.names()})
        for line in lines:
            if line.strip():
                self.handle_line(line)
            if self.stopping:
                break
        return 0

    def handle_line(self, line: str) -> None:
        try:
            request = protocol.parse_request(line)
        except protocol.ProtocolError as exc:
            self.send(protocol.error(getattr(exc, "request_id", None), str(exc), "ProtocolError"))
            return
        self.run(request)

    def run(self, request: protocol.Request) -> None:
        output_dir = Path(request.output_dir) if request.output_dir else None
        ctx = JobContext(request.id, self.send, self.cache, output_dir)
        try:
            handler = self.registry.get(request.job)
            data = handler(request.params, ctx)
            if not isinstance(data, dict):
                raise TypeError(f"job {request.job!r} returned {type(data).__name__}, not a dict")
            line = protocol.encode(protocol.result(request.id, data))  # data that is not JSON: an error reply
        except MedSegLensError as exc:
            self.send(protocol.error(request.id, str(exc), type(exc).__name__))
            return
        except ImportError as exc:
            name = getattr(exc, "name", None) or str(exc)
            self.send(
                protocol.error(
                    request.id,
                    f"{request.job!r} needs the Python package {name!r}, which this "
                    "Python cannot import; install MedSegLens's requirements (Resources/requirements.txt)",
                    "MissingDependency",
                )
            )
            return
        except MemoryError:
            self.cache.clear()
            self.send(
                protocol.error(
                    request.id,
                    f"out of memory while running {request.job!r}; close other programs or use a smaller input",
                    "MemoryError",
                )
            )
            return
        except Exception as exc:  # a bug in a job: report it, keep serving
            traceback.print_exc(file=sys.stderr)
            self.send(protocol.error(request.id, f"{type(exc).__name__}: {exc}", type(exc).__name__))
            return
        self._write(line)

    def _shutdown(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        self.stopping = True
        return {"pid": os.getpid()}


def watch_parent(pid: int, interval: float = 1.0) -> threading.Thread:
    """End the worker and its children if the program that started it dies (e.g. Slicer crashes).

    The worker runs in its own process group, so nothing else would stop it. POSIX only:
    on Windows `os.kill(pid, 0)` would terminate the process it asks about.
    """

    def watch() -> None:
        while process_alive(pid):
            time.sleep(interval)
        with contextlib.suppress(OSError):  # nobody may be reading stderr any more
            sys.stderr.write(f"medseglens worker: the program that started it (pid {pid}) is gone; stopping\n")
            sys.stderr.flush()
        os.killpg(os.getpgid(0), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="parent-watchdog", daemon=True)
    thread.start()
    return thread


def claim_stdout() -> TextIO:
    """Keep the real stdout for the protocol and send everything else written to fd 1 to stderr."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", encoding="utf-8", newline="\n", buffering=1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m MedSegLensLib.worker", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jobs",
        action="append",
        default=[],
        metavar="MODULE",
        help="also load the jobs of this module (its register(registry)); repeatable",
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument(
        "--parent-pid", type=int, default=0, help="stop (with its children) when this process is gone; POSIX only"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by torch when it is imported
    if args.parent_pid and not sys.platform.startswith("win"):
        watch_parent(args.parent_pid)
    out = claim_stdout()
    server = WorkerServer(JobRegistry(), out)
    try:
        server.registry.load_modules(JOB_MODULES + args.jobs)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        server.send(
            protocol.error(None, f"the worker cannot load its jobs: {type(exc).__name__}: {exc}", "StartupError")
        )
        return 1
    sys.stdin.reconfigure(encoding="utf-8", errors="replace")  # bad bytes become a ProtocolError, not a crash
    return server.serve(sys.stdin)
