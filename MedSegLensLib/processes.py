"""Whether a process still runs: tells a killed writer's temporaries from a live one's, and a gone parent; and a
lock file that lets one of several concurrent processes build a shared input while the others wait."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether `pid` still runs (POSIX; a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): os.kill said it exists


@contextmanager
def exclusive(path: Path, done: Callable[[], bool], poll_seconds: float = 10.0) -> Iterator[bool]:
    """Yield True when this process should build `path` (others wait until `done()`), False when it is done.

    The first process to create `path.lock` builds; the others poll; a lock left by a process that died is
    taken over.
    """
    lock = Path(str(path) + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    while not done():
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if not lock_holder_alive(lock):
                lock.unlink(missing_ok=True)
                continue
            time.sleep(poll_seconds)
            continue
        try:
            os.write(handle, str(os.getpid()).encode())
            os.close(handle)
            if not done():
                yield True
                return
        finally:
            lock.unlink(missing_ok=True)
    yield False


def lock_holder_alive(lock: Path) -> bool:
    """Whether the process whose pid `lock` holds still runs (an unreadable or empty lock is being written)."""
    try:
        pid = int(lock.read_text() or "0")
    except (OSError, ValueError):
        return True
    return pid <= 0 or process_alive(pid)
