"""Which of MedSegLens's Python requirements are missing in this Python.

Inside Slicer the worker runs with PythonSlicer, which shares Slicer's
site-packages, so checking here tells whether the worker can run. Only
`name` and `name>=version` lines are used, so no packaging library is needed.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError

_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:>=\s*([0-9][0-9A-Za-z.]*))?$")


def requirements_file() -> Path:
    """`Resources/requirements.txt` beside the library (source tree and installed extension alike)."""
    return Path(__file__).resolve().parents[2] / "Resources" / "requirements.txt"


def read_requirements(path: str | os.PathLike | None = None) -> list[tuple[str, str | None]]:
    """(name, minimum version or None) for each requirement line."""
    path = Path(path) if path is not None else requirements_file()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the requirements ({exc.strerror})") from None
    result = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.match(line)
        if not match:
            raise InputError(f"{path}:{number}: {line!r} is not 'name' or 'name>=version'")
        result.append((match.group(1), match.group(2)))
    return result


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:4])


def missing_requirements(
    requirements: list[tuple[str, str | None]],
    installed_version: Callable[[str], str] = importlib.metadata.version,
) -> list[str]:
    """The requirement strings not satisfied (absent, or older than the minimum)."""
    missing = []
    for name, minimum in requirements:
        spec = f"{name}>={minimum}" if minimum else name
        try:
            version = installed_version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(spec)
            continue
        if minimum and _version_key(version) < _version_key(minimum):
            missing.append(spec)
    return missing
