"""Scale-out on torch.distributed: case-sharded activation extraction and data-parallel SAE training.

Start the usual commands under torchrun (one process per rank); see docs/distributed.md.
"""

from .group import RankGroup, default_backend, joined, launched_by_torchrun
from .training import RankSlice, train_sae_distributed

__all__ = ["RankGroup", "RankSlice", "default_backend", "joined", "launched_by_torchrun", "train_sae_distributed"]
