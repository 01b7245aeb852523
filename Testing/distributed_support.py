"""Starting real torchrun jobs from tests: gloo on 127.0.0.1, a free port, one thread per rank."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import subprocess_env

JOBS = Path(__file__).with_name("distributed_jobs.py")


def set_torchrun_env(monkeypatch, rank: int = 0, local_rank: int = 0, world_size: int = 1) -> None:
    """The variables torchrun gives a rank (rendezvous on loopback), for code that joins inside a test process.

    MASTER_PORT 0: the one rank's store binds a free port itself, so no other process can take it first."""
    env = {
        "RANK": rank,
        "LOCAL_RANK": local_rank,
        "WORLD_SIZE": world_size,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": 0,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))


def torchrun_command(ranks: int, *program: str) -> list[str]:
    """`torchrun --standalone` (as `python -m torch.distributed.run`): one node, and torchrun itself binds a free
    loopback port, so suites running side by side never race for one."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks), *program]


def run_torchrun(ranks: int, *job_args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run a `distributed_jobs.py` job on `ranks` ranks."""
    env = subprocess_env()
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        torchrun_command(ranks, str(JOBS), *job_args), env=env, capture_output=True, text=True, timeout=timeout
    )


def run_torchrun_module(ranks: int, *cli_args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """`torchrun --nproc-per-node N -m MedSegLensLib ...`: the documented command line."""
    env = subprocess_env()
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        torchrun_command(ranks, "-m", "MedSegLensLib", *cli_args),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
