"""Data-parallel SAE training: every rank takes a slice of the same global batch.

The batch stream of a row source depends only on (seed, batch index), so every
rank draws the same global batch and keeps its slice; the Trainer's reducer makes
the loss normalisation, the BatchTopK cut, the dead-latent counts, the input scale
and the geometric median whole-batch quantities, and sums the gradients. Every rank
then applies the same Adam update, so a run on N ranks follows the single-process
run on the same data, seed and global batch (up to float summation order), and
resumes from the same checkpoints, which rank 0 alone writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import CompatibilityError, ParameterError
from ..sae.model import SparseAutoencoder
from ..sae.rows import RowSource
from ..sae.training import Progress, SAETrainingSettings, Trainer
from .group import RankGroup, agree

if TYPE_CHECKING:  # the backbone stack (MONAI) loads only when a layer's SAE is fitted
    from ..models.inference import SegmentationModel
    from ..sae.store import ActivationStore


class RankSlice:
    """Rank `rank`'s part of a row source: slice `rank` of every batch and of the initialisation sample."""

    def __init__(self, source: RowSource, rank: int, world_size: int):
        self.source, self.rank, self.world_size = source, rank, world_size
        self.d_in, self.n_rows = source.d_in, source.n_rows

    def batches(self, batch_size: int, seed: int, start_batch: int = 0) -> Iterator[torch.Tensor]:
        if batch_size % self.world_size:
            raise ParameterError(
                f"batch size {batch_size} does not split evenly over {self.world_size} ranks; "
                f"use a multiple of {self.world_size}"
            )
        part = batch_size // self.world_size
        start = self.rank * part
        stream = self.source.batches(batch_size, seed, start_batch)
        try:
            for batch in stream:
                yield batch[start : start + part]
        finally:
            stream.close()

    def scan(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Every row of the whole source (evaluation is not split)."""
        return self.source.scan(batch_size)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        return self.source.sample(n, seed)[self.rank :: self.world_size]


def train_sae_distributed(
    source: RowSource,
    config: SAETrainingSettings,
    group: RankGroup,
    checkpoint_dir: str | Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    show_progress: bool = True,
) -> tuple[SparseAutoencoder, dict]:
    """Train on every rank of `group` (call it on each); each returns the same SAE and summary.

    `config.batch_size` is the global batch; it must be a multiple of the world size.
    `checkpoint_dir` must be one folder every rank sees (a shared file system).
    """
    trainer = Trainer(RankSlice(source, group.rank, group.world_size), config, checkpoint_dir, reducer=group)
    steps = group.gather_objects(trainer.state.step)
    if len(set(steps)) > 1:
        raise CompatibilityError(
            f"{checkpoint_dir}: ranks found different checkpoints (steps {steps}); "
            "put the checkpoint folder on a file system that every node shares"
        )
    sae = trainer.run(progress, show_progress and group.rank == 0)
    return sae, trainer.summary()


def fit_layer_sae_distributed(
    model: SegmentationModel,
    layer: str,
    store: ActivationStore,
    out: str | Path,
    config: SAETrainingSettings,
    group: RankGroup,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
) -> tuple[SparseAutoencoder, dict]:
    """`sae.fit.fit_layer_sae` on every rank of `group`: rank 0 readies the run folder and saves the SAE."""
    from ..sae.extract import check_store_for
    from ..sae.fit import partial_dir, prepare_run, publish_sae

    check_store_for(store, model, layer)
    agree(group, lambda: prepare_run(out, resume, overwrite) if group.rank == 0 else None)
    sae, summary = train_sae_distributed(store, config, group, partial_dir(out), show_progress=show_progress)
    agree(group, lambda: publish_sae(model, layer, store, out, sae, summary, overwrite) if group.rank == 0 else None)
    return sae, summary
