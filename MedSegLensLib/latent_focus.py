"""Where a latent fires in a case and how its overlay is coloured: one rule for the viewer and the Slicer module.

GUI-free (numpy only). Given a latent's activation map on the case grid:
- the colour range comes from the latent's own distribution in this case: the
  `LOW_PERCENTILE`..`HIGH_PERCENTILE` percentiles of its positive activations
  (not a fraction of one peak, which one hot voxel would decide); the default
  threshold (transparent below) is the range's lower end. Values under
  `FLOOR_SHARE` of the peak do not count as firing (the numerical tail of a
  smooth or interpolated map would otherwise pull the range down to ~0);
- the views jump to where it fires most: the voxel nearest the centroid of its
  top activations (those at or above the `TOP_PERCENTILE` percentile of its
  positive values), so the slices always pass through a voxel where it fires,
  also when the top activations sit in two separate places.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOW_PERCENTILE = 50.0
HIGH_PERCENTILE = 99.0
TOP_PERCENTILE = 99.0
FLOOR_SHARE = 0.01
HEAT_COLORMAP = "vtkMRMLColorTableNodefMRIPA"  # Slicer's fMRI positive-activation table: red (low) to yellow (high)
HEAT_CSS = "linear-gradient(to right, rgb(255, 0, 0), rgb(255, 128, 0), rgb(255, 255, 0))"  # the same, for a legend


@dataclass(frozen=True)
class LatentFocus:
    """A latent's map summarised for display, in activation units and canonical voxels of its grid."""

    peak: float
    low: float  # colour map's lower end (and default threshold): LOW_PERCENTILE of the positive activations
    high: float  # colour map's upper end: HIGH_PERCENTILE of the positive activations
    active_voxels: int  # voxels where it fires (above FLOOR_SHARE of the peak)
    voxels: int  # voxels of the map
    focus_voxel: tuple[int, int, int] | None  # where the slices go (None when the latent never fires here)
    peak_voxel: tuple[int, int, int] | None

    @property
    def active_share(self) -> float:
        return self.active_voxels / self.voxels if self.voxels else 0.0

    def focus_ras(self, affine) -> tuple[float, float, float] | None:
        """The focus voxel's physical position (RAS mm) through the grid's voxel-to-RAS affine."""
        if self.focus_voxel is None:
            return None
        return tuple(float(v) for v in (np.asarray(affine, float) @ np.array([*self.focus_voxel, 1.0]))[:3])

    def window(self) -> tuple[float, float]:
        """The colour map's range (low < high even for a map with a single value)."""
        return self.low, max(self.high, self.low * (1 + 1e-6), self.low + 1e-12)

    def legend(self, threshold: float | None = None) -> dict:
        """What a legend shows, in activation units (JSON-ready)."""
        low, high = self.window()
        return {
            "low": _round(low),
            "high": _round(high),
            "peak": _round(self.peak),
            "threshold": _round(low if threshold is None else threshold),
            "low_percentile": LOW_PERCENTILE,
            "high_percentile": HIGH_PERCENTILE,
            "active_share": round(self.active_share, 4),
            "colours": HEAT_CSS,
        }


def legend_text(legend: dict) -> str:
    """One line for a legend: "latent 13 · 0.78–3.33 (peak 7.98) · slices at R 12 A -30 S 8".

    `legend` is `LatentFocus.legend()` plus `latent` and `focus_ras` (RAS mm or None), the dict the viewer's
    display state keeps for its legend; the Slicer module writes its legend label with this function.
    """
    parts = [] if legend.get("latent") is None else [f"latent {legend['latent']}"]
    parts.append(f"{legend['low']:.3g}–{legend['high']:.3g} (peak {legend['peak']:.3g})")
    ras = legend.get("focus_ras")
    if ras is not None:
        parts.append("slices at " + " ".join(f"{axis} {int(round(float(v)))}" for axis, v in zip("RAS", ras)))
    return " · ".join(parts)


def _round(value: float) -> float:
    return float(f"{float(value):.4g}")


def latent_focus(activation: np.ndarray, mask: np.ndarray | None = None) -> LatentFocus:
    """Colour range and jump target of a latent map (`mask`, optional: where to count, e.g. the brain)."""
    values = np.asarray(activation, dtype=np.float32)
    inside = np.ones(values.shape, bool) if mask is None else np.asarray(mask, bool)
    if inside.shape != values.shape:
        raise ValueError(f"mask shape {inside.shape} differs from the map's {values.shape}")
    finite = inside & np.isfinite(values)
    voxels = int(inside.sum())
    peak = float(values[finite].max()) if finite.any() else 0.0
    if peak <= 0:
        return LatentFocus(0.0, 0.0, 0.0, 0, voxels, None, None)
    firing = finite & (values > FLOOR_SHARE * peak)
    positive = values[firing]
    low, high, top = np.percentile(positive, [LOW_PERCENTILE, HIGH_PERCENTILE, TOP_PERCENTILE])
    peak_index = np.flatnonzero(firing)[int(np.argmax(positive))]
    peak_voxel = tuple(int(v) for v in np.unravel_index(peak_index, values.shape))
    top_voxels = np.argwhere(firing & (values >= top))
    centroid = top_voxels.mean(axis=0)
    nearest = top_voxels[int(np.argmin(((top_voxels - centroid) ** 2).sum(axis=1)))]
    return LatentFocus(
        float(positive.max()),
        float(low),
        float(high),
        int(positive.size),
        voxels,
        tuple(int(v) for v in nearest),
        peak_voxel,
    )
