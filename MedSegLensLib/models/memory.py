"""What to do when the GPU runs out of memory: a smaller step, then the CPU, with a one-line notice.

Inference retries with one sliding window at a time, then stitches the full
volume on the CPU, then runs the case on the CPU. Training moves the network
and optimizer to the CPU and repeats the step. On the CPU nothing is left to
fall back to: the caller gets a one-line error (training keeps its last
finished epoch for `--resume`).
"""

from __future__ import annotations

import sys

import torch

OutOfMemoryError = torch.OutOfMemoryError


def notice(action: str) -> None:
    """Tell the user (stderr: the CLI, the worker log) that a fallback was taken."""
    print(f"medseglens: GPU out of memory; {action}", file=sys.stderr, flush=True)


def free_gpu_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def move_to_cpu(network: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> torch.device:
    """Move a network (and its optimizer's state) to the CPU in place; return the CPU device."""
    cpu = torch.device("cpu")
    network.to(cpu)
    if optimizer is not None:
        for state in optimizer.state.values():
            for key, value in state.items():
                if torch.is_tensor(value):
                    state[key] = value.to(cpu)
    free_gpu_memory()
    return cpu
