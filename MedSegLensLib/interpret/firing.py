"""Sums kept per latent and histogram-lattice value level, to be cut at thresholds known only at the end.

Whether a latent fires in a case, and where it fires, should count activation at
the level that marks its class (its best-Dice threshold), not faint activity
elsewhere; that threshold is known only after every case is scored. So volumes
(per case) and activation mass (per atlas label) are kept sparsely per latent and
per level e of the histogram lattice, [2^(e/P), 2^((e+1)/P)). Best-Dice thresholds
are lattice edges, so "at or above the threshold" is exact.
"""

from __future__ import annotations

import numpy as np

_OFFSET = 1 << 10  # levels -1024..1023 (values 2^(-1024/P)..2^(1024/P)); beyond that clipped to the ends
_SPAN = 2 * _OFFSET


def level_keys(latent: np.ndarray, value: np.ndarray, bins_per_octave: int) -> np.ndarray:
    """One int64 key per entry: latent and lattice level of its (positive) value."""
    level = np.clip(np.floor(bins_per_octave * np.log2(value)), -_OFFSET, _OFFSET - 1).astype(np.int64)
    return latent.astype(np.int64) * _SPAN + level + _OFFSET


def threshold_levels(thresholds: np.ndarray, bins_per_octave: int) -> np.ndarray:
    """Lattice level of each latent's threshold; a threshold of 0 (any activity) takes every level."""
    thresholds = np.nan_to_num(np.asarray(thresholds, dtype=np.float64), nan=0.0)
    levels = np.full(thresholds.shape, -_OFFSET, dtype=np.int64)
    positive = thresholds > 0
    levels[positive] = np.rint(bins_per_octave * np.log2(thresholds[positive])).astype(np.int64)
    return levels


class LevelSums:
    """Sums of weights keyed by (latent, level, column); additions are buffered and merged when the
    buffer outgrows the merged part (so merging costs O(n log n) overall)."""

    def __init__(self, n_latents: int, n_columns: int = 1):
        self.n_latents, self.n_columns = int(n_latents), int(n_columns)
        self.keys = np.zeros(0, dtype=np.int64)
        self.sums = np.zeros(0, dtype=np.float64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0

    def add(self, level_key: np.ndarray, weights: np.ndarray, column: np.ndarray | None = None) -> None:
        keys = level_key * self.n_columns + (0 if column is None else column)
        self._pending.append((keys, np.asarray(weights, dtype=np.float64)))
        self._pending_size += keys.size
        if self._pending_size > max(self.keys.size, 1 << 20):
            self.merge()

    def merge(self) -> LevelSums:
        if self._pending:
            keys = np.concatenate([self.keys] + [k for k, _ in self._pending])
            weights = np.concatenate([self.sums] + [w for _, w in self._pending])
            self.keys, inverse = np.unique(keys, return_inverse=True)
            self.sums = np.bincount(inverse, weights=weights, minlength=self.keys.size)
            self._pending, self._pending_size = [], 0
        return self

    def at_or_above(self, levels: np.ndarray) -> np.ndarray:
        """(latents, columns) sums over the levels at or above each latent's threshold level."""
        self.merge()
        column = self.keys % self.n_columns
        level_key = self.keys // self.n_columns
        latent, level = level_key // _SPAN, level_key % _SPAN - _OFFSET
        keep = level >= levels[latent]
        flat = np.bincount(
            latent[keep] * self.n_columns + column[keep],
            weights=self.sums[keep],
            minlength=self.n_latents * self.n_columns,
        )
        return flat.reshape(self.n_latents, self.n_columns)
