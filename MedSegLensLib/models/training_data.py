"""Training data: labelled cases on the model grid, a seeded split, and MONAI patch sampling.

Cases are loaded once and kept in memory on the model grid (at ~3 mm a case is
a few MB). Patches are drawn by `RandCropByPosNegLabeld`, `pos` times as often
centred on tumour as on other brain voxels, then flipped left-right and
jittered in intensity. Every random choice comes from a seed derived from
(seed, epoch), so a run resumed at epoch E draws what an uninterrupted run would.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset, list_data_collate
from monai.transforms import (
    Compose,
    FgBgToIndicesd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SpatialPadd,
)
from monai.utils import convert_to_tensor

from ..data import Case, CaseFiles, discover_cohorts
from ..errors import InputError, ParameterError
from .config import ModelConfig
from .preprocess import label_to_channel_index, to_model_grid


@dataclass
class TrainingCase:
    """One labelled case on the model grid, as MONAI dictionary data."""

    case_id: str
    item: dict[str, np.ndarray]


def labelled_cases(folders: Sequence[str | os.PathLike], populations: Sequence[str] | None = None) -> list[CaseFiles]:
    """Cases with a segmentation in `folders`, optionally only from the given populations."""
    cases = [c for c in discover_cohorts(list(folders)) if c.seg]
    if populations:
        cases = [c for c in cases if c.population in set(populations)]
    if not cases:
        what = f" of population {', '.join(populations)}" if populations else ""
        raise InputError(f"{', '.join(map(str, folders))}: no labelled cases{what} found (each case needs a -seg file)")
    return cases


def training_spacing(cases: Sequence[Case]) -> tuple[float, float, float]:
    """The most common voxel spacing (canonical axis order) among the cases."""
    spacings = [tuple(round(s, 3) for s in case.grid.spacing) for case in cases]
    return Counter(spacings).most_common(1)[0][0]


def split_cases(cases: Sequence[CaseFiles], val_fraction: float, seed: int) -> tuple[list[CaseFiles], list[CaseFiles]]:
    """A seeded train/validation split (at least one case on each side when there are two or more)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ParameterError(f"validation fraction {val_fraction} must be in [0, 1)")
    ordered = sorted(cases, key=lambda c: c.case_id)
    order = np.random.default_rng(seed).permutation(len(ordered))
    n_val = int(round(val_fraction * len(ordered)))
    if val_fraction > 0 and len(ordered) >= 2:
        n_val = min(max(n_val, 1), len(ordered) - 1)
    val = [ordered[i] for i in sorted(order[:n_val])]
    train = [ordered[i] for i in sorted(order[n_val:])]
    return train, val


def read_cases(cases: Sequence[CaseFiles], progress: Callable[[int, int], None] | None = None) -> list[Case]:
    """Load each case with its labels (a case without a segmentation is an error here)."""
    loaded = []
    for number, files in enumerate(cases):
        loaded.append(files.load())
        if progress:
            progress(number + 1, len(cases))
    return loaded


def training_items(cases: Sequence[Case], config: ModelConfig) -> list[TrainingCase]:
    """Cases on the model grid, padded to the patch size, with tumour/brain voxel indices for sampling."""
    pad = SpatialPadd(keys=["image", "label", "brain"], spatial_size=config.patch_size)
    index = FgBgToIndicesd(keys="label", image_key="brain", image_threshold=0.5)
    items = []
    for case in cases:
        arrays = to_model_grid(case, config, with_label=True)
        item = {
            "image": arrays.image,
            "label": label_to_channel_index(arrays.label, config, case.files.get("seg", case.case_id)).astype(np.uint8)[
                None
            ],
            "brain": np.any(arrays.image != 0, axis=0, keepdims=True).astype(np.float32),
        }
        item = index(pad(item))
        item.pop("brain")
        items.append(TrainingCase(case.case_id, {k: np.asarray(v) for k, v in item.items()}))
    return items


def patch_transform(config: ModelConfig, samples_per_case: int, pos: float) -> Compose:
    """Random patches balanced towards tumour, left-right flips, mild intensity jitter."""
    keys = ["image", "label"]
    return Compose(
        [
            RandCropByPosNegLabeld(
                keys=keys,
                label_key="label",
                spatial_size=config.patch_size,
                pos=pos,
                neg=1.0,
                num_samples=samples_per_case,
                fg_indices_key="label_fg_indices",
                bg_indices_key="label_bg_indices",
            ),
            RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
            RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
        ]
    )


def epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % (2**32)


def epoch_loader(
    cases: Sequence[TrainingCase], transform: Compose, batch_size: int, seed: int, epoch: int
) -> DataLoader:
    """The epoch's shuffled patch batches; identical for the same (seed, epoch)."""
    transform.set_random_state(seed=epoch_seed(seed, epoch))
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    dataset = Dataset([c.item for c in cases], transform=transform)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=0, generator=generator, collate_fn=_collate_patches
    )


def _collate_patches(batch: list) -> dict[str, torch.Tensor]:
    """Flatten the per-case patch lists and keep only image and label."""
    patches = [sample for samples in batch for sample in (samples if isinstance(samples, list) else [samples])]
    collated = list_data_collate([{"image": p["image"], "label": p["label"]} for p in patches])
    # plain tensors: MONAI's MetaTensor bookkeeping would slow every layer of the network down
    image = convert_to_tensor(collated["image"], dtype=torch.float32, track_meta=False)
    label = convert_to_tensor(collated["label"], dtype=torch.long, track_meta=False)
    return {"image": image, "label": label}


def case_ids_digest(cases: Sequence[CaseFiles]) -> list[str]:
    """What identifies the training data in provenance: case id and seg file name."""
    return [f"{c.case_id}:{Path(c.seg).name if c.seg else ''}" for c in sorted(cases, key=lambda c: c.case_id)]
