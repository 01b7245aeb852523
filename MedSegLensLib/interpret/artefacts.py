"""Latents that map the network's machinery instead of anatomy: lattices, window seams, the volume's edge, air.

Where such patterns come from (docs/interpret.md, "Artefact latents"): a MONAI
U-Net up-samples with stride-2 transposed convolutions of kernel 3, whose
overlap is uneven, so a decoder layer carries a checkerboard with a period of
2 layer voxels; sliding-window inference blends windows placed every
`int(roi * (1 - overlap))` image voxels, so a layer can also carry seams with
that period; zero padding and the air around the head give latents that fire
at the volume's faces or outside the brain.

Per latent, summed over cases on the layer's own grid:
- periodicity: along each axis, the power spectrum of the latent's map (numpy.fft)
  near the frequency 1/period (the bin and its neighbours) over what a flat
  spectrum would put there; a lattice gives a peak (ratio >> 1), white noise 1,
  a smooth blob << 1;
- outside share: share of the activation mass (value x image voxels) outside the brain mask;
- edge share: share of the activation mass on the layer's outermost voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from ..data import Grid
from .evidence import LayerCodes

GRID = "artefact: grid"
SEAM = "artefact: seam"
EDGE = "artefact: volume edge"
OUTSIDE = "artefact: outside head"
ARTEFACT_CATEGORIES: tuple[str, ...] = (GRID, SEAM, EDGE, OUTSIDE)

UP_SAMPLING_PERIOD = 2  # layer voxels: the stride of the transposed convolution that made the layer
PEAK_RATIO_MIN = 3.0  # spectral power at the period over a flat spectrum's (white noise: 1, with small spread)
OUTSIDE_SHARE_MIN = 0.5  # most of the activation mass outside the brain
EDGE_SHARE_MIN = 0.5  # most of the activation mass on the outermost layer voxels
EDGE_WIDTH = 1  # layer voxels counted as the volume's edge on each face
DENSE_VALUES = 1 << 22  # latents x layer voxels made dense at once (bounds memory)


def rounded(value: float) -> float | None:
    """A number as latents.json holds it: 4 decimals, None when not finite."""
    return None if not np.isfinite(value) else round(float(value), 4)


@dataclass(frozen=True)
class ArtefactSettings:
    """grid_period: in layer voxels; window_step: the sliding-window step in image voxels per axis
    (None: no sliding windows, no seam test)."""

    grid_period: int = UP_SAMPLING_PERIOD
    window_step: tuple[int, int, int] | None = None
    peak_ratio_min: float = PEAK_RATIO_MIN
    outside_share_min: float = OUTSIDE_SHARE_MIN
    edge_share_min: float = EDGE_SHARE_MIN


def layer_stride(case_grid: Grid, layer_grid: Grid) -> np.ndarray:
    """Image voxels per layer voxel along each axis."""
    case_step = np.linalg.norm(np.asarray(case_grid.affine)[:3, :3], axis=0)
    layer_step = np.linalg.norm(np.asarray(layer_grid.affine)[:3, :3], axis=0)
    return layer_step / case_step


def harmonics(period: float, n: int) -> np.ndarray:
    """Frequencies (cycles per voxel) of a pattern repeating every `period` voxels on an axis of n voxels:
    m / period up to 1/2; none when the period is shorter than 2 voxels or fits fewer than twice."""
    if not 2 <= period <= n / 2:
        return np.zeros(0)
    return np.arange(1, int(period // 2) + 1) / period


def band_powers(maps: np.ndarray, tests: list[list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(tests, latents, axes) power at each test's frequencies (the nearest bin of each) along each axis,
    and what a flat spectrum would put there. maps: (latents, d, h, w); tests: per test and axis, the
    frequencies in cycles per voxel (one spectrum per axis serves every test)."""
    band = np.zeros((len(tests), maps.shape[0], 3))
    flat = np.zeros((len(tests), maps.shape[0], 3))
    for axis in range(3):
        if not any(test[axis].size for test in tests):
            continue
        n = maps.shape[1 + axis]
        frequency = np.fft.rfftfreq(n)[1:]  # without the mean (DC)
        spectrum = scipy.fft.rfft(maps, axis=1 + axis)
        others = tuple(a for a in (1, 2, 3) if a != 1 + axis)
        power = (spectrum.real**2 + spectrum.imag**2).sum(axis=others)[:, 1:]
        for t, test in enumerate(tests):
            near = (np.abs(frequency[:, None] - test[axis][None, :]) <= 0.5 / n + 1e-9).any(axis=1)
            band[t, :, axis] = power[:, near].sum(axis=1)
            flat[t, :, axis] = power.sum(axis=1) * near.sum() / near.size
    return band, flat


@dataclass
class ArtefactScores:
    """Per latent: spectral peak ratios (max over axes; NaN when not measured), outside and edge shares."""

    grid_ratio: np.ndarray
    seam_ratio: np.ndarray
    outside_share: np.ndarray
    edge_share: np.ndarray
    settings: ArtefactSettings

    def kind(self, latent: int) -> str | None:
        """The artefact category of a latent, or None; a periodic pattern is named before where it lies."""
        s = self.settings
        if self.seam_ratio[latent] >= s.peak_ratio_min:  # peaks at the window step's own harmonics
            return SEAM
        if self.grid_ratio[latent] >= s.peak_ratio_min:
            return GRID
        if self.edge_share[latent] >= s.edge_share_min:
            return EDGE
        if self.outside_share[latent] >= s.outside_share_min:
            return OUTSIDE
        return None

    def record(self, latent: int) -> dict:
        """The numbers behind `kind` for latents.json."""
        return {
            "kind": self.kind(latent),
            "grid_peak_ratio": rounded(self.grid_ratio[latent]),
            "seam_peak_ratio": rounded(self.seam_ratio[latent]),
            "outside_head": rounded(self.outside_share[latent]),
            "volume_edge": rounded(self.edge_share[latent]),
        }


class ArtefactAccumulator:
    """Sums per latent over cases: band and flat-spectrum powers (grid and seam), mass outside, on the edge, in all."""

    def __init__(self, n_latents: int, settings: ArtefactSettings | None = None):
        self.n_latents = int(n_latents)
        self.settings = settings or ArtefactSettings()
        self.power = np.zeros((2, 2, self.n_latents, 3))  # (grid, seam) x (band, flat) x latents x axes
        self.mass = np.zeros((3, self.n_latents))  # outside the brain, on the edge, all

    def _frequencies(self, shape: tuple[int, ...], stride: np.ndarray) -> list[list[np.ndarray]]:
        """Per test (grid, seam) and axis, the frequencies to look at; the seam test leaves out the grid's
        (a lattice's harmonics are also a coarser comb's), so a seam is told apart from a lattice."""
        grid = [harmonics(self.settings.grid_period, n) for n in shape]
        step = self.settings.window_step
        if step is None:
            return [grid, [np.zeros(0)] * 3]
        seam = [np.setdiff1d(harmonics(s / k, n), g) for s, k, n, g in zip(step, stride, shape, grid)]
        return [grid, seam]

    def add_case(self, codes: LayerCodes, case_grid: Grid, index: np.ndarray, brain: np.ndarray) -> None:
        """index: (X, Y, Z) layer voxel of each case voxel (`layer_index`); brain: (X, Y, Z) mask."""
        shape = tuple(codes.grid.shape)
        n_layer = int(np.prod(shape))
        all_count = np.bincount(index.reshape(-1), minlength=n_layer)
        outside_count = np.bincount(index[~brain], minlength=n_layer)
        edge = np.zeros(shape, dtype=bool)
        for axis, n in enumerate(shape):
            cut = [slice(None)] * 3
            cut[axis] = np.r_[0 : min(EDGE_WIDTH, n), max(n - EDGE_WIDTH, 0) : n]
            edge[tuple(cut)] = True
        weights = np.stack([outside_count, all_count * edge.reshape(-1), all_count], axis=1).astype(np.float32)
        frequencies = self._frequencies(shape, layer_stride(case_grid, codes.grid))
        positive = codes.value > 0
        order = np.argsort(codes.latent[positive], kind="stable")
        latent, voxel, value = (a[positive][order] for a in (codes.latent, codes.voxel, codes.value))
        present, starts = np.unique(latent, return_index=True)
        ends = np.r_[starts[1:], latent.size]
        chunk = max(1, DENSE_VALUES // n_layer)
        for first in range(0, present.size, chunk):
            latents = present[first : first + chunk]
            entries = slice(starts[first], ends[first + latents.size - 1])
            dense = np.zeros((latents.size, n_layer), dtype=np.float32)
            dense[np.searchsorted(latents, latent[entries]), voxel[entries]] = value[entries]
            self.mass[:, latents] += (dense @ weights).T
            band, flat = band_powers(dense.reshape(latents.size, *shape), frequencies)
            self.power[:, 0, latents] += band
            self.power[:, 1, latents] += flat

    def finish(self) -> ArtefactScores:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.nanmax(
                np.where(self.power[:, 1] > 0, self.power[:, 0] / self.power[:, 1], np.nan), axis=-1, initial=-np.inf
            )
            ratio = np.where(np.isfinite(ratio), ratio, np.nan)
            outside, edge = (np.where(self.mass[2] > 0, m / self.mass[2], 0.0) for m in self.mass[:2])
        return ArtefactScores(ratio[0], ratio[1], outside, edge, self.settings)
