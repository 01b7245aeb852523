"""What the scorer consumes per case: ground-truth maps on the case grid and sparse latent codes.

`LayerCodes` holds one case's active codes on the layer's own grid (entries of
layer voxel, latent, value). Scoring happens on the case (image) grid: each case
voxel takes the code of the nearest layer voxel (`layer_index`), i.e. the latent
map resampled to the image grid with nearest-neighbour interpolation, which keeps
the histograms of 16k latents sparse (trilinear resampling would make every
latent dense around each active voxel).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..data import Case, CaseFiles, Grid, read_label_volume
from ..data.geometry import resample_to_grid, to_canonical
from ..errors import InputError, ParameterError
from ..synth.location_atlas import ATLAS_LABELS


@dataclass
class LayerCodes:
    """One case's active SAE codes: `value` of `latent` at flat layer voxel `voxel` (C order of grid.shape)."""

    grid: Grid
    voxel: np.ndarray
    latent: np.ndarray
    value: np.ndarray
    n_latents: int

    def __post_init__(self):
        self.voxel = np.asarray(self.voxel, dtype=np.int64).reshape(-1)
        self.latent = np.asarray(self.latent, dtype=np.int64).reshape(-1)
        self.value = np.asarray(self.value, dtype=np.float32).reshape(-1)
        if not (self.voxel.size == self.latent.size == self.value.size):
            raise ParameterError("sparse codes need as many voxels, latents and values")
        if self.voxel.size and (self.voxel.min() < 0 or self.voxel.max() >= int(np.prod(self.grid.shape))):
            raise ParameterError(f"sparse code voxel outside the layer grid {tuple(self.grid.shape)}")

    @classmethod
    def from_case_codes(cls, codes) -> LayerCodes:
        """From `sae.encode.CaseCodes` (what `encode_case` returns)."""
        as_numpy = [t.numpy() if hasattr(t, "numpy") else t for t in (codes.voxel, codes.latent, codes.value)]
        return cls(codes.grid, *as_numpy, n_latents=codes.n_latents)

    def image_map(self, latent: int, case_grid: Grid) -> np.ndarray:
        """One latent on the case grid, nearest-neighbour: exactly the map the scores were computed on."""
        flat = np.zeros(int(np.prod(self.grid.shape)), dtype=np.float32)
        where = self.latent == latent
        flat[self.voxel[where]] = self.value[where]
        return flat[layer_index(case_grid, self.grid)]

    @classmethod
    def from_dense(cls, codes: np.ndarray, grid: Grid) -> LayerCodes:
        """From a (latents, d, h, w) array of codes on `grid` (zeros are inactive)."""
        n_latents = codes.shape[0]
        flat = codes.reshape(n_latents, -1)
        latent, voxel = np.nonzero(flat)
        return cls(grid, voxel, latent, flat[latent, voxel], n_latents)


def brain_mask(case: Case, atlas: np.ndarray | None = None) -> np.ndarray:
    """Voxels inside the brain: the tissue map's brain classes, else the atlas's regions, else where any
    modality is non-zero (BraTS images are skull-stripped: zero outside the brain)."""
    if case.tissue is not None:
        return case.tissue > 0
    if atlas is not None:
        return atlas > 0
    return (case.image != 0).any(axis=0)


@dataclass
class CaseMaps:
    """A case's ground truth on its canonical grid: label (required), tissue and atlas (optional), and
    the brain mask (`brain_mask`; all voxels when not given)."""

    case_id: str
    population: str
    grid: Grid
    label: np.ndarray
    tissue: np.ndarray | None = None
    atlas: np.ndarray | None = None
    brain: np.ndarray | None = None

    def __post_init__(self):
        if self.brain is None:
            self.brain = np.ones(self.label.shape, dtype=bool)

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.grid.spacing)) / 1000.0

    @classmethod
    def from_case(cls, case: Case, atlas: np.ndarray | None = None) -> CaseMaps:
        if case.label is None:
            raise InputError(
                f"case {case.case_id} has no label map (-seg file); interpretation scores latents "
                f"against the ground truth, so every case needs one (healthy cases: all zeros)"
            )
        return cls(case.case_id, case.population, case.grid, case.label, case.tissue, atlas, brain_mask(case, atlas))


def read_atlas(path: str | os.PathLike, grid: Grid) -> np.ndarray:
    """A location atlas (`synth` `-atlas` file, labels of `ATLAS_LABELS`) on a case's canonical grid."""
    volume = read_label_volume(
        path,
        tuple(ATLAS_LABELS),
        kind="atlas",
        hint="the atlas must use the labels of atlas_labels.csv (medseglens synth)",
    )
    array, own = to_canonical(volume.array, volume.grid)
    return array if own.same_as(grid) else resample_to_grid(array, own, grid, order=0)


def load_case_maps(files: CaseFiles) -> tuple[Case, CaseMaps]:
    """Read a case and its maps (the atlas when the cohort has one)."""
    case = files.load(with_labels=True)
    atlas = read_atlas(files.atlas, case.grid) if files.atlas else None
    return case, CaseMaps.from_case(case, atlas)


def layer_index(case_grid: Grid, layer: Grid) -> np.ndarray:
    """(X, Y, Z) flat index of the layer voxel nearest to each case voxel's centre (clipped to the layer).

    Halves round up, as scipy.ndimage does for order-0 resampling.
    """
    mapping = np.linalg.inv(layer.affine) @ case_grid.affine
    axes = [np.arange(n) for n in case_grid.shape]
    shape = np.asarray(layer.shape)
    index = np.zeros(tuple(case_grid.shape), dtype=np.int64)
    grid_points = np.meshgrid(*axes, indexing="ij")
    for axis in range(3):
        position = sum(mapping[axis, j] * grid_points[j] for j in range(3)) + mapping[axis, 3]
        coordinate = np.clip(np.floor(position + 0.5).astype(np.int64), 0, shape[axis] - 1)
        index = index * shape[axis] + coordinate
    return index
