"""Reading a source's JSON/YAML description files as plain data (yaml.safe_load: no tags, no objects)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ...errors import InputError


def read_data_file(path: Path, missing: str = "not found") -> Any:
    """The parsed file; a missing or unreadable file is a one-line `InputError` naming it."""
    if not path.is_file():
        raise InputError(f"{path}: {missing}")
    try:
        text = path.read_text(encoding="utf-8")
        return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "YAML" if path.suffix in (".yaml", ".yml") else "JSON"
        raise InputError(f"{path}: not valid {kind} ({' '.join(str(exc).split())[:100]})") from None
