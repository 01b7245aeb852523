"""Tiny inputs for the worker tests: a BraTS-named case folder and an untrained tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from MedSegLensLib.data import MODALITIES, Grid, write_volume

SHAPE = (20, 24, 16)


def write_case(folder: Path, rng: np.random.Generator, case_id: str = "case-001", with_labels: bool = False) -> Path:
    """Four modalities in a non-canonical orientation (flipped first axis, anisotropic voxels)."""
    affine = np.array([[-2.0, 0, 0, 40], [0, 2.0, 0, -20], [0, 0, 2.5, -10], [0, 0, 0, 1]])
    grid = Grid(SHAPE, affine)
    case_dir = folder / case_id
    blob = np.zeros(SHAPE, np.float32)
    blob[6:12, 8:16, 5:11] = 1.0
    for index, modality in enumerate(MODALITIES):
        image = rng.normal(0, 0.2, SHAPE).astype(np.float32) + (1 + index) * blob
        write_volume(image, grid, case_dir / f"{case_id}-{modality}.nii.gz")
    if with_labels:
        labels = (blob * 2).astype(np.uint8)
        labels[8:10, 10:14, 7:9] = 3
        write_volume(labels, grid, case_dir / f"{case_id}-seg.nii.gz", dtype=np.uint8)
    return case_dir


def save_tiny_model(folder: Path) -> Path:
    """An untrained tiny U-Net (fixed seed): real weights, real config, real file format."""
    import torch

    from MedSegLensLib.models.config import tiny_config
    from MedSegLensLib.models.registry import build_network
    from MedSegLensLib.models.storage import save_model

    torch.manual_seed(0)
    config = tiny_config("unet")
    save_model(build_network(config), config, folder)
    return folder
