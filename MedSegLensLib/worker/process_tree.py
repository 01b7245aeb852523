"""Start a process in its own group and kill the whole tree (worker plus its children).

`Popen.kill()` alone would leave grandchildren (data loaders, helper tools)
running. POSIX: a new session, then `killpg`. Windows: a new process group and
`taskkill /T`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

IS_WINDOWS = sys.platform.startswith("win")


def new_group_kwargs() -> dict[str, Any]:
    """`Popen` keyword arguments that put the child in a group of its own."""
    if IS_WINDOWS:
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        return {"creationflags": flags}
    return {"start_new_session": True}


def kill_tree(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """Kill `proc` and every process of its group, then reap it; return its exit code.

    Also called after the leader has died, to take down children it left behind.
    """
    if IS_WINDOWS:
        if proc.poll() is None:
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, check=False)
            proc.kill()
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group outlives its leader while members remain
        except (ProcessLookupError, PermissionError):
            pass
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def describe_exit(returncode: int | None) -> str:
    """'exited with code 3' / 'was killed by SIGKILL' for a one-line report."""
    if returncode is None:
        return "did not exit"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"
