"""Shared fixtures: tiny synthetic volumes written as real NIfTI/NRRD files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
torch_threads = int(os.environ.get("MEDSEGLENS_TEST_THREADS", "2"))


def subprocess_env() -> dict[str, str]:
    """Environment for subprocesses that must import this checkout's package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@pytest.fixture
def python_exe() -> str:
    return sys.executable


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
