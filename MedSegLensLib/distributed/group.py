"""Joining a job started by torchrun, and the collectives MedSegLens needs over it.

torchrun (and `srun torchrun`, Kubernetes' PyTorchJob, cloud launchers) start one
process per rank and describe the job in environment variables (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT); `joined()` reads them (`env://`). The
backend follows the hardware: NCCL when CUDA is available, with one GPU per local
rank, otherwise gloo. MedSegLens' SAE engine computes on the CPU, so under NCCL its
small reductions travel through the rank's GPU and come back.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ..errors import MedSegLensError, ParameterError
from ..sae.reduce import Reducer

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# How long a leaving rank waits for the others at the final barrier. Ranks reach it together
# (the commands end with a collective), so only a rank that died elsewhere makes anyone wait this long.
LEAVE_TIMEOUT_S = 120
T = TypeVar("T")


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
        return self._all_reduce(tensor, dist.ReduceOp.SUM)

    def min(self, tensor: torch.Tensor) -> torch.Tensor:
        return self._all_reduce(tensor, dist.ReduceOp.MIN)

    def _all_reduce(self, tensor: torch.Tensor, op: dist.ReduceOp) -> torch.Tensor:
        result = tensor.to(self.device, copy=True)
        dist.all_reduce(result, op=op)
        return result.to(tensor.device)

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        size = torch.tensor([values.numel()], device=self.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world_size)]
        dist.all_gather(sizes, size)
        counts = [int(s) for s in sizes]
        padded = torch.zeros(max(counts), dtype=values.dtype, device=self.device)
        padded[: values.numel()] = values.reshape(-1)
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


def agree(group: RankGroup, work: Callable[[], T]) -> T:
    """Run `work` on every rank, then wait for all; if any rank hit an expected error, every rank raises it.

    So a refusal seen by one rank (a store already complete, a missing checkpoint)
    ends every rank with the same one-line message instead of leaving them waiting.
    """
    result, error = None, None
    try:
        result = work()
    except MedSegLensError as exc:
        error = exc
    for failure in group.gather_objects(error):
        if failure is not None:
            raise failure
    return result


@contextlib.contextmanager
def joined(backend: str | None = None, timeout_minutes: float = 60) -> Iterator[RankGroup]:
    """Join the torchrun job for the duration of the block (reuses a group already joined).

    `timeout_minutes` bounds how long a rank waits for the others at a collective
    (the slowest rank's extraction share, or a dead rank torchrun has not yet reaped).
    """
    if dist.is_available() and dist.is_initialized():
        yield RankGroup(_device(dist.get_backend()))
        return
    device = _join(backend, timeout_minutes)
    try:
        yield RankGroup(device)
    except BaseException:
        dist.destroy_process_group()  # no barrier: the other ranks may never reach one
        raise
    leave()


def job_group(requested: bool = False) -> RankGroup | None:
    """The command line's group: joined for the life of the process when `requested` (--distributed)
    or when torchrun started more than one rank; None for a single process."""
    if dist.is_available() and dist.is_initialized():
        return RankGroup(_device(dist.get_backend()))
    several = launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1
    if not (requested or several):
        return None
    device = _join(None, 60)
    atexit.register(leave)
    return RankGroup(device)


def leave() -> None:
    """Leave the job together: wait until every rank is here, then tear the process group down.

    A rank that destroys its group while a peer is still finishing the last collective
    closes that peer's connections under a running operation; gloo's threads then abort
    the peer ("terminate called without an active exception", exit -6). After the barrier
    no rank has an operation in flight, so each rank's teardown joins idle threads only.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if dist.get_backend() == "gloo":  # bounded: a rank that died elsewhere must not hold this one forever
            dist.monitored_barrier(timeout=timedelta(seconds=LEAVE_TIMEOUT_S))
        else:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def _join(backend: str | None, timeout_minutes: float) -> torch.device:
    if not launched_by_torchrun():
        raise ParameterError(
            "--distributed needs the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); "
            "start the command with `torchrun --nproc-per-node N -m MedSegLensLib ...`"
        )
    backend = backend or default_backend()
    _use_local_gpu()
    dist.init_process_group(backend, init_method="env://", timeout=timedelta(minutes=timeout_minutes))
    return _device(backend)


def _use_local_gpu() -> None:
    """One GPU per local rank: later `cuda` tensors and models (the backbone too) land on it."""
    if not torch.cuda.is_available():
        return
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if local_rank >= torch.cuda.device_count():
        raise ParameterError(
            f"local rank {local_rank} has no GPU of its own ({torch.cuda.device_count()} on this "
            "node); start at most one process per GPU (--nproc-per-node gpu)"
        )
    torch.cuda.set_device(local_rank)


def _device(backend: str) -> torch.device:
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
