"""Per-case active volume by octave of activation: "fires in a case" at a threshold known only at the end.

Whether a latent fires in a case should mean activation at the level that marks
its class (its best-Dice threshold), not any faint activity; that threshold is
known only after all cases are scored. So each case keeps, sparsely, the volume
of each latent active in each octave [2^o, 2^(o+1)) of value. The volume at or
above a threshold t is then read at the octave edge 2^floor(log2 t), i.e. it may
include voxels up to 2x below t (never voxels below t/2).
"""

from __future__ import annotations

import numpy as np

_OFFSET = 64  # octaves -64..63 are kept apart; values beyond are clipped into the end octaves
_SPAN = 2 * _OFFSET


class OctaveVolumes:
    def __init__(self, n_latents: int):
        self.n_latents = int(n_latents)
        self.cases: list[tuple[np.ndarray, np.ndarray]] = []
        self._open: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, latent: np.ndarray, value: np.ndarray, volume: np.ndarray) -> None:
        """Entries of the current case: positive `value`, `volume` (ml) each entry covers."""
        octave = np.clip(np.floor(np.log2(value)), -_OFFSET, _OFFSET - 1).astype(np.int64)
        self._open.append(self._merge(latent.astype(np.int64) * _SPAN + octave + _OFFSET, volume))

    def end_case(self) -> None:
        keys = np.concatenate([k for k, _ in self._open]) if self._open else np.zeros(0, np.int64)
        volumes = np.concatenate([v for _, v in self._open]) if self._open else np.zeros(0)
        self.cases.append(self._merge(keys, volumes))
        self._open = []

    @staticmethod
    def _merge(keys: np.ndarray, volumes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        unique, inverse = np.unique(keys, return_inverse=True)
        return unique, np.bincount(inverse, weights=volumes, minlength=unique.size).astype(np.float32)

    def volume_at_or_above(self, thresholds: np.ndarray) -> np.ndarray:
        """(cases, latents) volume active at or above the octave edge at or below each latent's threshold."""
        thresholds = np.asarray(thresholds, dtype=np.float64)
        edge = np.full(self.n_latents, -_OFFSET, dtype=np.int64)
        positive = np.isfinite(thresholds) & (thresholds > 0)
        edge[positive] = np.floor(np.log2(thresholds[positive])).astype(np.int64)
        out = np.zeros((len(self.cases), self.n_latents))
        for row, (keys, volumes) in enumerate(self.cases):
            latent, octave = keys // _SPAN, keys % _SPAN - _OFFSET
            keep = octave >= edge[latent]
            out[row] = np.bincount(latent[keep], weights=volumes[keep], minlength=self.n_latents)
        return out
