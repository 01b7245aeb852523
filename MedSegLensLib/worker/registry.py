"""The worker's job registry and the context a job runs with.

A job module exposes `register(registry)` and adds handlers by name; the worker
imports the modules in `JOB_MODULES` (plus any given with `--jobs`). A handler is
`handler(params: dict, ctx: JobContext) -> dict` returning the result's JSON
data; it reports progress through `ctx`, writes files only under
`ctx.output_dir` (atomically) and keeps expensive objects (a loaded model, a
case, cached activations) in `ctx.cache` so the next request reuses them.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ParameterError
from . import protocol

# Job modules loaded by every worker, in order. Add one line per area.
JOB_MODULES = [
    "MedSegLensLib.worker.basic_jobs",
    "MedSegLensLib.worker.segment_job",
    "MedSegLensLib.worker.latent_jobs",
    "MedSegLensLib.worker.steer_job",
]

Emit = Callable[[dict[str, Any]], None]
Handler = Callable[[dict[str, Any], "JobContext"], dict[str, Any]]


class JobRegistry:
    """Handlers by job name."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def add(self, name: str, handler: Handler) -> None:
        if name in self._handlers:
            raise ValueError(f"job {name!r} is registered twice")
        self._handlers[name] = handler

    def get(self, name: str) -> Handler:
        try:
            return self._handlers[name]
        except KeyError:
            raise ParameterError(f"unknown job {name!r}; this worker knows {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def load_modules(self, modules: list[str]) -> None:
        for name in modules:
            importlib.import_module(name).register(self)


class WorkerCache:
    """Expensive objects kept between requests, at most `per_kind` of each kind.

    Keys must change when the underlying files change (see `folder_fingerprint`).
    """

    def __init__(self, per_kind: int = 1) -> None:
        self.per_kind = per_kind
        self._items: dict[str, dict[Hashable, Any]] = {}
        self.hits: dict[str, int] = {}
        self.misses: dict[str, int] = {}

    def get_or_create(self, kind: str, key: Hashable, factory: Callable[[], Any]) -> Any:
        items = self._items.setdefault(kind, {})
        if key in items:
            self.hits[kind] = self.hits.get(kind, 0) + 1
            items[key] = items.pop(key)  # most recently used last
            return items[key]
        self.misses[kind] = self.misses.get(kind, 0) + 1
        value = factory()
        while len(items) >= self.per_kind:
            items.pop(next(iter(items)))
        items[key] = value
        return value

    def clear(self) -> None:
        self._items.clear()

    def kinds(self) -> dict[str, int]:
        return {kind: len(items) for kind, items in self._items.items()}


def folder_fingerprint(path: str | os.PathLike) -> tuple:
    """A cache key for a file or folder: resolved path plus each file's size and mtime."""
    path = Path(path).resolve()
    if path.is_file():
        stat = path.stat()
        return (str(path), stat.st_size, stat.st_mtime_ns)
    entries = []
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.is_file():
                stat = child.stat()
                entries.append((child.name, stat.st_size, stat.st_mtime_ns))
    return (str(path), tuple(entries))


@dataclass
class JobContext:
    """What a handler may use: progress and log reporting, its output folder, the cache."""

    request_id: str | None
    emit: Emit
    cache: WorkerCache
    output_dir: Path | None = None
    _fraction: float = field(default=0.0, repr=False)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress; fractions are clamped to [0, 1] and never go backwards."""
        self._fraction = max(self._fraction, min(1.0, max(0.0, float(fraction))))
        self.emit(protocol.progress(self.request_id, self._fraction, message))

    def log(self, message: str, level: str = "info") -> None:
        self.emit(protocol.log(self.request_id, message, level))

    def output_path(self, name: str) -> Path:
        """A path for an output file inside this request's output folder."""
        if Path(name).name != name or name in ("", ".", ".."):
            raise ParameterError(f"output name {name!r} must be a plain file name")
        if self.output_dir is None:
            self.output_dir = Path(tempfile.mkdtemp(prefix="medseglens-job-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        return self.output_dir / name
