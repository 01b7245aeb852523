"""Atomic outputs: write to a temporary sibling, then rename into place.

A reader (or a crash) therefore sees either the complete old file, the complete
new one, or nothing: never a partial output. Folders are published the same way.
A temporary left by a killed process is removed by the next writer of the same path.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import OutputError
from .pause_points import pause_point
from .processes import process_alive


def _explain_os_error(path: Path, exc: OSError) -> OutputError:
    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EACCES: "permission denied (read-only folder?)",
        errno.EPERM: "permission denied (read-only folder?)",
        errno.EROFS: "the file system is read-only",
        errno.ENOENT: "the parent folder does not exist",
        errno.EFBIG: "the file is larger than this file system or the file-size limit allows",
    }.get(exc.errno, exc.strerror or str(exc))
    return OutputError(f"{path}: cannot write ({reason}); choose another output location")


def ensure_parent(path: Path) -> None:
    """Create the parent folder of `path`, turning OS errors into one-line errors."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _explain_os_error(path, exc) from None


def _current_umask() -> int:
    """The process umask, read without changing it where Linux allows (other threads may be creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _give_normal_mode(tmp: Path, final: Path, base: int) -> None:
    """mkstemp/mkdtemp create 0600/0700 entries; give them what open()/mkdir() would (or the replaced file's mode)."""
    try:
        mode = stat.S_IMODE(final.stat().st_mode)
    except OSError:
        mode = base & ~_current_umask()
    os.chmod(tmp, mode)


def _temporary_prefix(path: Path) -> str:
    """Temporaries are named `.NAME.PID.`: a later writer can tell those of a killed process from live ones."""
    return f".{path.name}.{os.getpid()}."


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries that a killed writer of `path` left behind (their process is gone)."""
    prefix = f".{path.name}."
    try:
        siblings = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and ".partial" in p.name]
    except OSError:
        return
    for sibling in siblings:
        pid = sibling.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            with contextlib.suppress(OSError):
                shutil.rmtree(sibling) if sibling.is_dir() else sibling.unlink()


def check_can_write(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse to replace an existing user file unless `overwrite` is set."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists; pass --overwrite or choose another name")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds.

    `suffix` keeps extension-sensitive writers (nibabel, pynrrd) happy; by default
    the final file's full suffix is reused.
    """
    path = Path(path)
    ensure_parent(path)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    try:
        _remove_stale_temporaries(path)
        fd, tmp_name = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=f".partial{suffix}", dir=path.parent)
    except OSError as exc:
        raise _explain_os_error(path, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _give_normal_mode(tmp, path, 0o666)
        yield tmp
        pause_point(f"write:{path.name}")
        os.replace(tmp, path)
    except OSError as exc:
        raise _explain_os_error(path, exc) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    """`json.dumps(..., default=json_default)`: numpy values and paths, as in every JSON the project writes."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name and publish it with one rename.

    An existing folder is only replaced when `overwrite` is set, and then only
    after the new one is complete.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists; pass --overwrite or choose another folder")
    ensure_parent(path)
    try:
        _remove_stale_temporaries(path)
        tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".partial", dir=path.parent))
    except OSError as exc:
        raise _explain_os_error(path, exc) from None
    try:
        _give_normal_mode(tmp, path, 0o777)
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        raise _explain_os_error(path, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
