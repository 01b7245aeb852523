"""Starting real torchrun jobs from tests: gloo on 127.0.0.1, a free port, one thread per rank."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from conftest import subprocess_env

JOBS = Path(__file__).with_name("distributed_jobs.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_torchrun_env(monkeypatch, rank: int = 0, local_rank: int = 0, world_size: int = 1) -> None:
    """The variables torchrun gives a rank (rendezvous on loopback), for code that joins inside a test process."""
    env = {"RANK": rank, "LOCAL_RANK": local_rank, "WORLD_SIZE": world_size, "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": free_port()}
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))


def torchrun_command(ranks: int, *program: str) -> list[str]:
    """`torchrun` (as `python -m torch.distributed.run`) on one node, rendezvous on loopback."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(ranks),
            "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *program]


def run_torchrun(ranks: int, *job_args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run a `distributed_jobs.py` job on `ranks` ranks."""
    env = subprocess_env()
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(torchrun_command(ranks, str(JOBS), *job_args), env=env, capture_output=True,
                          text=True, timeout=timeout)


def run_torchrun_module(ranks: int, *cli_args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """`torchrun --nproc-per-node N -m MedSegLensLib ...`: the documented command line."""
    env = subprocess_env()
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(torchrun_command(ranks, "-m", "MedSegLensLib", *cli_args), env=env, capture_output=True,
                          text=True, timeout=timeout)
