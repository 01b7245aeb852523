"""Joining a job started by torchrun, and the collectives MedSegLens needs over it.

torchrun (and `srun torchrun`, Kubernetes' PyTorchJob, cloud launchers) start one
process per rank and describe the job in environment variables (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT); `joined()` reads them (`env://`). The
backend follows the hardware: NCCL when CUDA is available, with one GPU per local
rank, otherwise gloo. MedSegLens' SAE engine computes on the CPU, so under NCCL its
small reductions travel through the rank's GPU and come back.
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from typing import Any, Iterator

import torch
import torch.distributed as dist

from ..errors import ParameterError
from ..sae.reduce import Reducer

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    """True inside a process started by torchrun (or any launcher that sets its variables)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


class RankGroup(Reducer):
    """This process's rank in the job, and sums, gathers and barriers over all ranks."""

    def __init__(self, device: torch.device):
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = device

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.to(self.device, copy=True)
        dist.all_reduce(total)
        return total.to(tensor.device)

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        size = torch.tensor([values.numel()], device=self.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world_size)]
        dist.all_gather(sizes, size)
        counts = [int(s) for s in sizes]
        padded = torch.zeros(max(counts), dtype=values.dtype, device=self.device)
        padded[:values.numel()] = values.reshape(-1)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat([part[:count] for part, count in zip(parts, counts)]).to(values.device)

    def gather_objects(self, obj: Any) -> list[Any]:
        """`obj` of every rank (picklable, small), in rank order, on every rank."""
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        dist.barrier()


@contextlib.contextmanager
def joined(backend: str | None = None, timeout_minutes: float = 60) -> Iterator[RankGroup]:
    """Join the torchrun job for the duration of the block (reuses a group already joined).

    `timeout_minutes` bounds how long a rank waits for the others at a collective
    (the slowest rank's extraction share, or a dead rank torchrun has not yet reaped).
    """
    if dist.is_available() and dist.is_initialized():
        yield RankGroup(_device(dist.get_backend()))
        return
    if not launched_by_torchrun():
        raise ParameterError(
            "--distributed needs the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); "
            "start the command with `torchrun --nproc-per-node N -m MedSegLensLib ...`")
    backend = backend or default_backend()
    device = _device(backend)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method="env://", timeout=timedelta(minutes=timeout_minutes))
    try:
        yield RankGroup(device)
    finally:
        dist.destroy_process_group()


def _device(backend: str) -> torch.device:
    if backend == "nccl":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")
