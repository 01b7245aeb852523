"""Shared fixtures: tiny synthetic volumes written as real NIfTI/NRRD files."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import settings

# Property tests draw the same examples on every run: a run never fails on an example another run did not
# draw (a real bug found that way is kept as an @example). No example database, no per-example deadline.
settings.register_profile("medseglens", derandomize=True, database=None, deadline=None)
settings.load_profile("medseglens")

ROOT = Path(__file__).resolve().parents[1]
torch_threads = int(os.environ.get("MEDSEGLENS_TEST_THREADS", "2"))
# The deadline for a condition a test waits on (a worker's reply, a process's end, a file's arrival):
# sized for a 2-core machine with other suites beside it. A wait ends as soon as its condition holds.
WAIT_S = 180.0


def load_bench(name: str) -> ModuleType:
    """A script of bench/ imported as a module (bench/ is not a package), so its tiny-size path can be tested."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def subprocess_env() -> dict[str, str]:
    """Environment for subprocesses that must import this checkout's package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@contextlib.contextmanager
def fault_jobs_worker():
    """A real worker, one thread, that also runs the jobs of Testing/worker_fault_jobs.py; closed on exit."""
    from MedSegLensLib.worker import WorkerProcess

    process = WorkerProcess(env=subprocess_env(), job_modules=["Testing.worker_fault_jobs"], threads=1)
    try:
        yield process
    finally:
        process.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder shared by the tests of one module (cohorts, trained tiny models)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def worker():
    """A real worker subprocess shared by a test module's tests."""
    from MedSegLensLib.worker import WorkerProcess

    process = WorkerProcess(env=subprocess_env(), threads=1)
    yield process
    process.close()


@pytest.fixture
def python_exe() -> str:
    return sys.executable


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "one_thread: run each test on one torch thread (models_support.single_thread)")


@pytest.fixture(autouse=True)
def one_thread_when_marked(request: pytest.FixtureRequest):
    """A module marked `pytestmark = pytest.mark.one_thread` runs on one torch thread, with no fixture imported by
    name; unmarked tests keep their own thread settings (torch is imported only for marked ones)."""
    if request.node.get_closest_marker("one_thread") is None:
        yield
        return
    from models_support import single_thread

    with single_thread():
        yield
