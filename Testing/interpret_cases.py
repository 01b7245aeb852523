"""Planted latents on real synthetic cohorts (MNI anatomy at 6 mm) for the interpretation tests.

Each planted latent is built from a case's own ground truth, on a layer grid of
stride 1 (it fires exactly on its class) or 2 (the scores then go through the
layer-to-image resampling, and 12 mm blocks blur every class):
0 edema (plus faint activity on 3 % of the brain in every case), 1 enhancing rim (ET),
2 CSF outside the tumour, 3 random (20 % of voxels, log-normal values), 4 whole tumour
but only in pediatric cases, 5 never active, 6 outside the brain, 7 left hemisphere white
matter, 8 a lattice: the brain on every second layer voxel along the first axis (a
checkerboard-like artefact), 9 edema drawn with that lattice (a feature carrying the
layer's texture).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from MedSegLensLib.data import Grid, discover_cohorts
from MedSegLensLib.interpret import LayerCodes
from MedSegLensLib.synth import generate_cohort

SPACING = 6.0
N_LATENTS = 10
COHORTS = (("adult", 4, 11), ("pediatric", 3, 12), ("healthy", 2, 13))
EDEMA, RIM, CSF, RANDOM, PEDIATRIC, DEAD, OUTSIDE, LEFT_WM, LATTICE, EDEMA_LATTICE = range(N_LATENTS)


def make_cohorts(root: Path) -> list[Path]:
    return [generate_cohort(p, n, seed, root / p, spacing=SPACING, progress=False).folder for p, n, seed in COHORTS]


def layer_grid(case_grid: Grid, stride: int) -> Grid:
    """A layer grid whose voxel j sits at case voxel stride * j (the capture convention)."""
    affine = np.array(case_grid.affine, dtype=float)
    affine[:3, :3] *= stride
    return Grid(tuple(-(-n // stride) for n in case_grid.shape), affine)


def planted_layer_maps(case, seed: int, stride: int = 1) -> np.ndarray:
    """(N_LATENTS, d, h, w) planted codes: ground truth read at each layer voxel's centre."""
    rng = np.random.default_rng(seed)
    label = case.label[::stride, ::stride, ::stride]
    tissue = case.tissue[::stride, ::stride, ::stride]
    shape = label.shape
    codes = np.zeros((N_LATENTS, *shape), np.float32)
    noise = rng.uniform(0.9, 1.1, shape)
    faint = (rng.random(shape) < 0.03) & (tissue > 0) & (label != 2)
    codes[EDEMA] = (label == 2) * 1.5 * noise + faint * 0.02
    codes[RIM] = (label == 3) * 2.0 * noise
    codes[CSF] = ((tissue == 1) & (label == 0)) * 0.7 * noise
    codes[RANDOM] = (rng.random(shape) < 0.2) * rng.lognormal(0.0, 1.0, shape)
    if case.population == "pediatric":
        codes[PEDIATRIC] = (label > 0) * 3.0 * noise
    codes[OUTSIDE] = (tissue == 0) * 0.4 * noise
    x = np.arange(shape[0])[:, None, None] * stride
    left = x < case.grid.shape[0] // 2  # canonical RAS order: low i is the patient's left
    codes[LEFT_WM] = ((tissue == 3) & (label == 0) & left) * 1.0 * noise
    every_second = (np.arange(shape[0]) % 2 == 0)[:, None, None]
    codes[LATTICE] = ((tissue > 0) & every_second) * 0.8 * noise
    codes[EDEMA_LATTICE] = ((label > 0) & every_second) * 1.2 * noise
    return codes


def planted_encoder(case, stride: int = 1) -> LayerCodes:
    seed = sum(map(ord, case.case_id))
    return LayerCodes.from_dense(planted_layer_maps(case, seed, stride), layer_grid(case.grid, stride))


def cohort_cases(folders: list[Path]):
    return discover_cohorts(folders)
