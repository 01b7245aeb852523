"""Jobs that the worker tests load with `--jobs Testing.worker_fault_jobs`.

They are real jobs run by the real worker, built to put it in the states a
fault test needs: mid-job with a child process alive, mid-write, raising,
exiting, printing to stdout, or paused inside the real `segment` job.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from MedSegLensLib.fileio import atomic_path
from MedSegLensLib.worker import segment_job
from MedSegLensLib.worker.registry import JobContext, JobRegistry

HANG_SECONDS = 300


def count(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    steps = int(params.get("steps", 5))
    for step in range(1, steps + 1):
        time.sleep(float(params.get("delay", 0.01)))
        ctx.progress(step / steps, f"step {step} of {steps}")
    return {"steps": steps, "pid": os.getpid()}


def spawn_child_and_hang(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Start a grandchild, start writing an output, report both, then block until killed."""
    child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({HANG_SECONDS})"])
    with atomic_path(ctx.output_path("result.npy")) as tmp:
        tmp.write_bytes(b"\x93NUMPY partial")
        ctx.progress(0.5, f"child {child.pid} started; writing {tmp.name}")
        time.sleep(HANG_SECONDS)
    return {"child": child.pid}


def fail(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    ctx.progress(0.3, "about to fail")
    ctx.output_path("partial.txt").write_text("half")
    raise RuntimeError("boom:\n  something went wrong on a second line")


def exit_now(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    ctx.progress(0.2, "exiting")
    sys.stderr.write("fatal: the worker gives up\n")
    sys.stderr.flush()
    os._exit(int(params.get("code", 3)))


def print_noise(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Libraries that print to stdout (Python or C level) must not corrupt the protocol."""
    print("noise from print()")
    os.write(1, b"noise written to fd 1\n")
    return {"ok": True}


def segment_paused(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The real `segment` job, stopped (until killed) when it reports the stage `pause_at`."""
    report = ctx.progress

    def progress(fraction: float, message: str = "") -> None:
        report(fraction, message)
        if message == params["pause_at"]:
            ctx.log("paused")
            time.sleep(HANG_SECONDS)

    ctx.progress = progress
    return segment_job.segment(params, ctx)


def register(registry: JobRegistry) -> None:
    for job in (count, spawn_child_and_hang, fail, exit_now, print_noise, segment_paused):
        registry.add(job.__name__, job)
