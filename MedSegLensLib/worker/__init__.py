"""The background worker: a long-lived process speaking a JSON line protocol.

`python -m MedSegLensLib.worker` (PythonSlicer inside Slicer) keeps models and
cases in memory between requests; `WorkerProcess` starts it, sends requests,
pumps its messages without blocking, cancels by killing the process tree and
reports crashes. Areas add jobs through `registry.JOB_MODULES`.
"""

from .client import WorkerError, WorkerProcess, default_python, raise_for
from .protocol import Message, ProtocolError, Request
from .registry import JOB_MODULES, JobContext, JobRegistry, WorkerCache, folder_fingerprint

__all__ = [
    "JOB_MODULES",
    "JobContext",
    "JobRegistry",
    "Message",
    "ProtocolError",
    "Request",
    "WorkerCache",
    "WorkerError",
    "WorkerProcess",
    "default_python",
    "folder_fingerprint",
    "raise_for",
]
