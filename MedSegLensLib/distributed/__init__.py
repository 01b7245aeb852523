"""Scale-out on torch.distributed: case-sharded activation extraction and data-parallel SAE training.

Start the usual commands under torchrun (one process per rank); see docs/distributed.md.
"""

from .extraction import extract_activations_distributed, extract_sharded
from .group import RankGroup, agree, default_backend, job_group, joined, launched_by_torchrun
from .training import RankSlice, fit_layer_sae_distributed, train_sae_distributed

__all__ = [
    "RankGroup",
    "RankSlice",
    "agree",
    "default_backend",
    "extract_activations_distributed",
    "extract_sharded",
    "fit_layer_sae_distributed",
    "job_group",
    "joined",
    "launched_by_torchrun",
    "train_sae_distributed",
]
