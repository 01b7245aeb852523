"""Where MedSegLens keeps downloaded templates and other reusable caches."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache folder: $MEDSEGLENS_CACHE, else ~/.cache/medseglens."""
    root = os.environ.get("MEDSEGLENS_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "medseglens"
    path.mkdir(parents=True, exist_ok=True)
    return path
