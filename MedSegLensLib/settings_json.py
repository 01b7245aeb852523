"""Reading a settings dataclass's fields from a JSON file, with one-line errors for unreadable files and unknown "
"keys."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .errors import InputError, ParameterError


def read_settings(path: str | Path, cls: type, what: str) -> dict:
    """The JSON object in `path`, checked to name only fields of the dataclass `cls` (`what` names it in errors)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: the {what} must be a JSON object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ParameterError(f"{path}: unknown {what} {unknown}; known: {sorted(known)}")
    return data
