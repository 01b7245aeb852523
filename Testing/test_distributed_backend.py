"""Backend and device choice when a rank joins: gloo on this CPU machine, NCCL and the local GPU on a GPU node.

There is no GPU (and no NCCL in the CPU build of torch) here, so the GPU-node tests
stand in for CUDA with a named fake (`FakeGpuNode`: `torch.cuda.is_available`,
`device_count`, `set_device`, `current_device`, `dist.is_nccl_available`) and record
the `dist.init_process_group` call instead of making it. The gloo path joins for real.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from distributed_support import set_torchrun_env

from MedSegLensLib.distributed import default_backend, joined
from MedSegLensLib.distributed import group as group_module
from MedSegLensLib.errors import ParameterError


class FakeGpuNode:
    """Stand-in for a node with `gpus` CUDA devices and NCCL (neither exists on this machine)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gpus: int):
        self.gpus, self.current, self.calls = gpus, 0, []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        monkeypatch.setattr(torch.cuda, "set_device", self.set_device)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(dist, "is_nccl_available", lambda: True)
        monkeypatch.setattr(dist, "init_process_group", self.init_process_group)

    def set_device(self, index: int) -> None:
        self.calls.append(("set_device", index))
        self.current = index

    def init_process_group(self, backend: str, **kwargs) -> None:
        self.calls.append(("init_process_group", backend, kwargs["init_method"]))


def test_a_cpu_machine_joins_with_gloo_and_keeps_the_reductions_on_the_cpu(monkeypatch):
    assert not torch.cuda.is_available() and default_backend() == "gloo"
    set_torchrun_env(monkeypatch)
    with joined() as group:  # a real one-rank gloo group
        assert dist.get_backend() == "gloo" and group.device == torch.device("cpu")
        assert torch.equal(group.sum(torch.tensor([1.5, 2.0])), torch.tensor([1.5, 2.0]))


def test_a_gpu_node_picks_nccl_and_each_rank_takes_its_local_gpu_before_joining(monkeypatch):
    node = FakeGpuNode(monkeypatch, gpus=4)
    assert default_backend() == "nccl"
    set_torchrun_env(monkeypatch, rank=6, local_rank=2, world_size=8)  # second node, third GPU
    device = group_module._join(None, timeout_minutes=1)
    # the GPU is set first, so NCCL and the backbone (`--device cuda`) use this rank's own GPU
    assert node.calls == [("set_device", 2), ("init_process_group", "nccl", "env://")]
    assert device == torch.device("cuda", 2)


def test_cuda_without_nccl_falls_back_to_gloo_on_the_cpu(monkeypatch):
    node = FakeGpuNode(monkeypatch, gpus=2)
    monkeypatch.setattr(dist, "is_nccl_available", lambda: False)
    set_torchrun_env(monkeypatch, rank=1, local_rank=1, world_size=2)
    assert group_module._join(None, timeout_minutes=1) == torch.device("cpu")
    assert node.calls == [("set_device", 1), ("init_process_group", "gloo", "env://")]


def test_more_ranks_than_gpus_on_a_node_is_a_one_line_error(monkeypatch):
    node = FakeGpuNode(monkeypatch, gpus=2)
    set_torchrun_env(monkeypatch, rank=2, local_rank=2, world_size=3)
    with pytest.raises(
        ParameterError, match=r"local rank 2 has no GPU of its own \(2 on this node\).*--nproc-per-node"
    ):
        group_module._join(None, timeout_minutes=1)
    assert node.calls == []  # refused before it touches a GPU or joins the group
