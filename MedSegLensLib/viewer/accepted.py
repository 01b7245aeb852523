"""Accepted segmentations: new files with provenance, published without ever replacing one.

A segmentation is written to a temporary file first, then hard-linked to its final
name; a link never replaces an existing file, so two sessions accepting at the same
moment get two names (`<stem>`, `<stem>-2`, ...) and nothing is overwritten or left
half-written.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import OutputError
from ..fileio import ensure_parent, sha256_file
from .workspace import Workspace, check_name

SEGMENTATION_SUFFIX = ".seg.nrrd"
PROVENANCE_SUFFIX = ".provenance.json"
MAX_NAME_ATTEMPTS = 1000


@dataclass(frozen=True)
class AcceptedSegmentation:
    segmentation: Path
    provenance: Path


def timestamped_stem(source: str, now: _dt.datetime | None = None) -> str:
    """A readable default name: what was accepted and when (UTC)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return check_name(f"{source}-{now.strftime('%Y%m%dT%H%M%SZ')}", "name")


def accept_segmentation(
    workspace: Workspace,
    case_id: str,
    stem: str,
    write_segmentation: Callable[[Path], None],
    provenance: dict,
) -> AcceptedSegmentation:
    """Write a new `accepted/<case>/<stem>[-n].seg.nrrd` and its provenance JSON.

    `write_segmentation(path)` writes the segmentation file (a .seg.nrrd) to `path`.
    """
    check_name(stem, "name")
    folder = workspace.accepted_dir(case_id)
    ensure_parent(folder / "x")
    with _temporary(folder, SEGMENTATION_SUFFIX) as seg_tmp, _temporary(folder, PROVENANCE_SUFFIX) as prov_tmp:
        write_segmentation(seg_tmp)
        if not seg_tmp.is_file() or seg_tmp.stat().st_size == 0:
            raise OutputError(f"{folder}: the segmentation could not be written; check the disk and try again")
        record = {
            **provenance,
            "case_id": case_id,
            "segmentation_sha256": sha256_file(seg_tmp),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "medseglens_version": __version__,
        }
        for attempt in range(1, MAX_NAME_ATTEMPTS + 1):
            name = stem if attempt == 1 else f"{stem}-{attempt}"
            seg_path = folder / f"{name}{SEGMENTATION_SUFFIX}"
            prov_path = folder / f"{name}{PROVENANCE_SUFFIX}"
            if prov_path.exists() or not _link_new(seg_tmp, seg_path):
                continue
            _write_json(prov_tmp, {**record, "segmentation_file": seg_path.name})
            if _link_new(prov_tmp, prov_path):
                return AcceptedSegmentation(seg_path, prov_path)
            seg_path.unlink()
    raise OutputError(f"{folder}: {MAX_NAME_ATTEMPTS} segmentations named {stem!r} exist already; choose another name")


def _link_new(source: Path, target: Path) -> bool:
    """Publish `source` as `target` unless `target` exists (atomic, never replaces)."""
    try:
        os.link(source, target)
    except FileExistsError:
        return False
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror}); choose another workspace") from None
    return True


def _write_json(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


@contextlib.contextmanager
def _temporary(folder: Path, suffix: str):
    try:
        fd, name = tempfile.mkstemp(prefix=".accepting-", suffix=suffix, dir=folder)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write ({exc.strerror}); choose another workspace") from None
    os.close(fd)
    path = Path(name)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
