"""The worker's line protocol: one JSON object per line, in both directions.

Requests (caller -> worker, on stdin)::

    {"id": "3", "job": "segment", "params": {...}, "output_dir": "/tmp/.../3"}

Messages (worker -> caller, on stdout)::

    {"type": "ready",    "pid": 123, "version": "0.1.0", "jobs": ["ping", ...]}
    {"type": "progress", "id": "3", "fraction": 0.4, "message": "running the model"}
    {"type": "log",      "id": "3", "level": "info", "message": "..."}
    {"type": "result",   "id": "3", "data": {...}}
    {"type": "error",    "id": "3", "kind": "InputError", "message": "one line"}

Large arrays never travel in JSON: jobs write files (atomically) into the
request's `output_dir` and return their paths in `data`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..fileio import json_default

MESSAGE_TYPES = ("ready", "progress", "log", "result", "error")
MAX_LINE_CHARS = 1 << 20


class ProtocolError(ValueError):
    """A line that does not follow the protocol (its message is one line)."""


@dataclass
class Request:
    """One job request as the worker receives it."""

    id: str | None
    job: str
    params: dict[str, Any] = field(default_factory=dict)
    output_dir: str | None = None

    def to_line(self) -> str:
        obj: dict[str, Any] = {"id": self.id, "job": self.job, "params": self.params}
        if self.output_dir is not None:
            obj["output_dir"] = self.output_dir
        return encode(obj)


@dataclass
class Message:
    """One message from the worker (or, for "cancelled", from the client itself)."""

    type: str
    id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        """True for the last message a request gets."""
        return self.type in ("result", "error", "cancelled")

    @property
    def message(self) -> str:
        return str(self.fields.get("message", ""))

    @property
    def fraction(self) -> float:
        return float(self.fields.get("fraction", 0.0))

    @property
    def data(self) -> dict[str, Any]:
        return self.fields.get("data") or {}


def one_line(text: object, limit: int = 2000) -> str:
    """Collapse whitespace so a message always fits on one line."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def encode(obj: dict[str, Any]) -> str:
    """One JSON line (no embedded newlines, NaN refused)."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=json_default)


def _load_object(line: str, what: str) -> dict[str, Any]:
    if len(line) > MAX_LINE_CHARS:
        raise ProtocolError(f"{what} line is {len(line)} characters long; the limit is {MAX_LINE_CHARS}")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            f"{what} is not valid JSON ({exc.msg} at column {exc.colno}): {one_line(line, 120)!r}"
        ) from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object, got {type(obj).__name__}: {one_line(line, 120)!r}")
    return obj


def parse_request(line: str) -> Request:
    """Validate one request line; raise `ProtocolError` with a one-line reason."""
    obj = _load_object(line, "request")
    request_id = obj.get("id")
    if request_id is not None and not isinstance(request_id, (str, int)):
        raise ProtocolError(f"request 'id' must be a string or an integer, got {type(request_id).__name__}")
    request_id = None if request_id is None else str(request_id)
    job = obj.get("job")
    if not isinstance(job, str) or not job:
        raise _with_id(ProtocolError("request has no 'job' name (a non-empty string)"), request_id)
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _with_id(
            ProtocolError(f"request 'params' must be a JSON object, got {type(params).__name__}"), request_id
        )
    output_dir = obj.get("output_dir")
    if output_dir is not None and not isinstance(output_dir, str):
        raise _with_id(ProtocolError("request 'output_dir' must be a path string"), request_id)
    unknown = sorted(set(obj) - {"id", "job", "params", "output_dir"})
    if unknown:
        raise _with_id(ProtocolError(f"request has unknown field(s) {', '.join(unknown)}"), request_id)
    return Request(request_id, job, params, output_dir)


def _with_id(exc: ProtocolError, request_id: str | None) -> ProtocolError:
    exc.request_id = request_id  # type: ignore[attr-defined]
    return exc


def parse_message(line: str) -> Message:
    """Validate one message line from the worker; raise `ProtocolError` if malformed."""
    obj = _load_object(line, "worker message")
    kind = obj.pop("type", None)
    if kind not in MESSAGE_TYPES:
        raise ProtocolError(f"worker message has unknown type {kind!r}: {one_line(line, 120)!r}")
    request_id = obj.pop("id", None)
    if kind in ("progress", "result") and request_id is None:
        raise ProtocolError(f"worker {kind} message has no id: {one_line(line, 120)!r}")
    if kind == "progress":
        fraction = obj.get("fraction")
        if not isinstance(fraction, (int, float)) or not math.isfinite(fraction) or not 0.0 <= fraction <= 1.0:
            raise ProtocolError(f"worker progress fraction {fraction!r} is not a number in [0, 1]")
    return Message(kind, None if request_id is None else str(request_id), obj)


def progress(request_id: str | None, fraction: float, message: str) -> dict[str, Any]:
    return {"type": "progress", "id": request_id, "fraction": round(float(fraction), 4), "message": one_line(message)}


def log(request_id: str | None, message: str, level: str = "info") -> dict[str, Any]:
    return {"type": "log", "id": request_id, "level": level, "message": one_line(message)}


def result(request_id: str | None, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "result", "id": request_id, "data": data}


def error(request_id: str | None, message: str, kind: str = "Error") -> dict[str, Any]:
    return {"type": "error", "id": request_id, "kind": kind, "message": one_line(message)}
