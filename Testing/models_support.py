"""Tiny labelled cases and tiny trained models for the models tests (no tests here).

Cases are written as real NIfTI files with nibabel directly: a brain-shaped
ellipsoid and a spherical tumour (edema shell, enhancing rim, necrotic core)
whose contrast in each modality mimics MRI (bright FLAIR edema, bright T1c rim).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from datafiles import write_nifti


@contextmanager
def single_thread() -> Iterator[None]:
    """Torch on one thread for the block: tiny networks run fastest so, and far faster than on two on shared CPUs."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def one_thread():
    """`single_thread` for every test of a module that imports this fixture (or, without an import, marks
    itself `pytestmark = pytest.mark.one_thread`: conftest.py)."""
    with single_thread():
        yield


MODALITY_CONTRAST = {  # background brain, NCR, ED, ET
    "t1n": (1.0, 0.6, 0.9, 0.9),
    "t1c": (1.0, 0.6, 0.9, 1.7),
    "t2w": (1.0, 1.7, 1.4, 1.3),
    "t2f": (1.0, 1.1, 1.7, 1.3),
}


def tiny_case_arrays(rng: np.random.Generator, shape=(24, 24, 24), tumour: bool = True) -> tuple[dict, np.ndarray]:
    """Four modality arrays and a BraTS label map (0 when `tumour` is False)."""
    grids = np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij")
    centre = np.array(shape) / 2 - 0.5
    brain = sum(((g - c) / (0.45 * s)) ** 2 for g, c, s in zip(grids, centre, shape)) < 1.0
    labels = np.zeros(shape, np.uint8)
    if tumour:
        tumour_centre = centre + rng.uniform(-3, 3, 3)
        radius = rng.uniform(4.0, 6.0)
        r = np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, tumour_centre))) / radius
        labels[(r < 1.0) & brain] = 2
        labels[(r < 0.7) & brain] = 3
        labels[(r < 0.4) & brain] = 1
    images = {}
    for name, contrast in MODALITY_CONTRAST.items():
        image = np.where(brain, contrast[0], 0.0)
        for value in (1, 2, 3):
            image = np.where(labels == value, contrast[value], image)
        images[name] = (100 * (image + np.where(brain, rng.normal(0, 0.05, shape), 0))).astype(np.float32)
    return images, labels


def write_case(root: Path, case_id: str, images: dict, labels: np.ndarray, affine: np.ndarray) -> Path:
    folder = root / case_id
    for name, array in images.items():
        write_nifti(folder / f"{case_id}-{name}.nii.gz", array, affine)
    write_nifti(folder / f"{case_id}-seg.nii.gz", labels, affine)
    return folder


def write_cohort(
    root: Path,
    count: int,
    seed: int = 0,
    spacing: float = 2.0,
    prefix: str = "case",
    population: str = "adult",
    healthy: int = 0,
) -> Path:
    """A cohort folder of `count` tumour cases (and `healthy` tumour-free ones) with a manifest."""
    rng = np.random.default_rng(seed)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    rows = ["case_id,population,t1n,t1c,t2w,t2f,seg"]
    for number in range(count + healthy):
        case_id = f"{prefix}-{number:03d}"
        is_healthy = number >= count
        images, labels = tiny_case_arrays(rng, tumour=not is_healthy)
        write_case(root, case_id, images, labels, affine)
        files = ",".join(f"{case_id}/{case_id}-{m}.nii.gz" for m in (*MODALITY_CONTRAST, "seg"))
        rows.append(f"{case_id},{'healthy' if is_healthy else population},{files}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


_TRAINED: dict[str, Path] = {}


def trained_tiny_model(arch: str, workdir: Path, epochs: int = 12) -> Path:
    """A tiny model trained on a tiny cohort (once per test session and architecture)."""
    if arch not in _TRAINED:
        from MedSegLensLib.models import TrainingSettings, labelled_cases, tiny_config, train_model

        cohort = write_cohort(workdir / f"cohort-{arch}", 6, seed=1)
        settings = TrainingSettings(epochs=epochs, seed=0, val_fraction=0.0, learning_rate=1e-2)
        train_model(tiny_config(arch), labelled_cases([cohort]), workdir / f"model-{arch}", settings, device="cpu")
        _TRAINED[arch] = workdir / f"model-{arch}"
    return _TRAINED[arch]


def tiny_training_cohort(arch: str, workdir: Path) -> Path:
    """The cohort the session's tiny model of `arch` was trained on (it lives in the first caller's workdir)."""
    return trained_tiny_model(arch, workdir).parent / f"cohort-{arch}"
