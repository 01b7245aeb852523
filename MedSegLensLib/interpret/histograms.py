"""Per-latent activation histograms, accumulated case by case from sparse codes.

Scoring 16k latents exactly would need every voxel's value of every latent.
Codes are sparse, so each case adds only its active entries to a histogram per
(latent, column): a column counts the voxels of one target class, or all
voxels. Inactive voxels (exact zeros) are never binned: they are the column's
total minus its active count, so ties at zero are handled exactly.

Bins lie on one global log2 lattice, `bins_per_octave` per factor of two. Each
latent keeps a window of `n_bins` lattice bins ending just above its largest
value so far; when a larger value arrives the window slides up and the bins
that fall off the bottom merge into bin 0, which holds everything below its
upper edge. Because the lattice is global, sliding is exact: no count changes
bin except by merging into bin 0.
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError


class LogHistograms:
    """Counts (latents, n_bins, columns) on a sliding per-latent window of a log2 lattice.

    Bin j of latent l covers [edge(top_l - n_bins + j), edge(top_l - n_bins + j + 1)),
    with edge(e) = 2 ** (e / bins_per_octave); bin 0 also holds every smaller positive value.
    """

    def __init__(self, n_latents: int, n_columns: int, bins_per_octave: int = 4, n_bins: int = 64):
        if n_latents < 1 or n_columns < 1:
            raise ParameterError("histograms need at least one latent and one column")
        if bins_per_octave < 1 or n_bins < 2:
            raise ParameterError("bins_per_octave must be >= 1 and n_bins >= 2")
        self.n_latents, self.n_columns = int(n_latents), int(n_columns)
        self.bins_per_octave, self.n_bins = int(bins_per_octave), int(n_bins)
        self.counts = np.zeros((self.n_latents, self.n_bins, self.n_columns), dtype=np.int64)
        self.top = np.zeros(self.n_latents, dtype=np.int64)
        self.seen = np.zeros(self.n_latents, dtype=bool)

    @property
    def bin_ratio(self) -> float:
        """Upper over lower edge of every bin but bin 0."""
        return float(2.0 ** (1.0 / self.bins_per_octave))

    def exponents(self, values: np.ndarray) -> np.ndarray:
        """Lattice index e with edge(e) <= value < edge(e + 1), for positive values."""
        return np.floor(self.bins_per_octave * np.log2(values.astype(np.float64))).astype(np.int64)

    def lower_edges(self) -> np.ndarray:
        """(latents, n_bins) lower edge of each bin; bin 0's is 0 (it holds every smaller value)."""
        exponents = self.top[:, None] - self.n_bins + np.arange(self.n_bins)[None, :]
        edges = 2.0 ** (exponents / self.bins_per_octave)
        edges[:, 0] = 0.0
        edges[~self.seen] = np.nan
        return edges

    def add(self, latent: np.ndarray, value: np.ndarray, weights: np.ndarray, first_column: int = 0) -> None:
        """Add entries: `weights` (entries, w) are the counts each entry adds to its bin in columns
        first_column .. first_column + w - 1 (default: all columns).

        Entries with value <= 0 are ignored (inactive voxels are not binned).
        """
        latent = np.asarray(latent, dtype=np.int64)
        value = np.asarray(value)
        weights = np.asarray(weights)
        width = weights.shape[1] if weights.ndim == 2 else -1
        if (
            weights.shape != (latent.size, width)
            or first_column < 0
            or first_column + width > self.n_columns
            or value.shape != latent.shape
        ):
            raise ParameterError(
                f"entries disagree: {latent.shape} latents, {value.shape} values, weights {weights.shape}"
            )
        positive = value > 0
        if not positive.all():
            latent, value, weights = latent[positive], value[positive], weights[positive]
        if latent.size == 0:
            return
        if latent.min() < 0 or latent.max() >= self.n_latents:
            raise ParameterError(f"latent index outside 0..{self.n_latents - 1}")
        exponent = self.exponents(value)
        self._raise_tops(latent, exponent)
        bins = np.clip(exponent - (self.top[latent] - self.n_bins), 0, self.n_bins - 1)
        key = latent * self.n_bins + bins
        size = self.n_latents * self.n_bins
        for column in range(width):
            added = np.bincount(key, weights=weights[:, column], minlength=size)
            self.counts[:, :, first_column + column] += (
                np.rint(added).astype(np.int64).reshape(self.n_latents, self.n_bins)
            )

    def _raise_tops(self, latent: np.ndarray, exponent: np.ndarray) -> None:
        """Slide each latent's window so its largest value lands in the top bin."""
        needed = np.full(self.n_latents, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(needed, latent, exponent + 1)
        touched = needed > np.iinfo(np.int64).min
        fresh = touched & ~self.seen
        self.top[fresh] = needed[fresh]
        self.seen |= touched
        for latent in np.flatnonzero(touched & (needed > self.top)):
            shift = int(needed[latent] - self.top[latent])
            rows = self.counts[latent]
            merged = rows[: min(shift + 1, self.n_bins)].sum(axis=0)
            moved = rows[shift + 1 :].copy() if shift + 1 < self.n_bins else rows[:0]
            rows[:] = 0
            rows[0] = merged
            rows[1 : 1 + len(moved)] = moved
            self.top[latent] = needed[latent]
