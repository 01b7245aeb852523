"""The MNI ICBM152 templates on a chosen grid, cached per spacing.

The 1 mm templates are resampled (with an anti-aliasing blur) onto a grid of the
requested spacing that covers the brain's bounding box plus a margin; every
synthetic case of that spacing shares this grid. Intensities are expressed
relative to each image's white-matter level (white matter = 1), so contrasts
can be set in "times white matter" units.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..data.geometry import Grid, resample_to_grid
from ..errors import ParameterError
from ..fileio import atomic_path
from ..paths import cache_dir
from .location_atlas import build_location_atlas, read_cerebra_groups
from .template_source import ensure_template_files

CACHE_VERSION = 1
MARGIN_MM = 10.0
SHAPE_MULTIPLE = 8  # U-Nets with three stride-2 stages need sizes divisible by 8
SPACING_RANGE_MM = (1.0, 8.0)


@dataclass(frozen=True)
class Templates:
    """Template anatomy on one grid (float32 arrays unless noted)."""

    grid: Grid
    t1: np.ndarray  # T1-weighted, white matter = 1
    t2: np.ndarray  # T2-weighted, white matter = 1
    brain: np.ndarray  # brain-mask probability
    csf: np.ndarray  # tissue probabilities; csf + gm + wm = brain
    gm: np.ndarray
    wm: np.ndarray
    atlas: np.ndarray  # uint8 coarse location atlas (`location_atlas.ATLAS_LABELS`)
    edge_distance_mm: np.ndarray  # distance to the brain's surface, inside the brain

    @property
    def spacing(self) -> float:
        return self.grid.spacing[0]


def check_spacing(spacing: float) -> float:
    low, high = SPACING_RANGE_MM
    if not (low <= float(spacing) <= high):
        raise ParameterError(f"spacing {spacing:g} mm is outside {low:g}-{high:g} mm; the templates are 1 mm")
    return float(spacing)


@functools.lru_cache(maxsize=4)
def load_templates(spacing: float = 2.0) -> Templates:
    """Templates at `spacing` mm (isotropic), built once and then read from the cache."""
    spacing = check_spacing(spacing)
    path = cache_dir() / "synth" / f"templates-{spacing:g}mm-v{CACHE_VERSION}.npz"
    if not path.is_file():
        arrays = _build(spacing)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, **arrays)
    with np.load(path, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    grid = Grid(tuple(int(s) for s in arrays.pop("shape")), arrays.pop("affine"))
    return Templates(grid=grid, **arrays)


def _build(spacing: float) -> dict[str, np.ndarray]:
    folder = ensure_template_files()
    t1_image = nib.load(str(folder / "t1.nii.gz"))
    source = Grid(tuple(t1_image.shape), np.asarray(t1_image.affine, dtype=float))
    brain = _read(folder / "brain_mask.nii.gz").clip(0, 1)
    gm = _onto(folder / "gm_2009a.nii.gz", source) / 255.0
    wm = _onto(folder / "wm_2009a.nii.gz", source) / 255.0
    total = np.maximum(gm + wm, 1.0)
    gm, wm = gm / total * brain, wm / total * brain
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    in_wm = (wm > 0.9) & (brain > 0.5)
    t1 = np.asarray(t1_image.dataobj, dtype=np.float32)
    t2 = _read(folder / "t2.nii.gz")
    t1, t2 = t1 / np.median(t1[in_wm]), t2 / np.median(t2[in_wm])
    atlas = build_location_atlas(
        _read(folder / "cerebra.nii.gz"), brain > 0.5, wm, read_cerebra_groups(folder / "CerebrA_LabelDetails.csv")
    )
    target = _brain_box_grid(brain > 0.5, source, spacing)
    continuous = {"t1": t1, "t2": t2, "brain": brain, "csf": csf, "gm": gm, "wm": wm}
    out = {name: _downsample(array, source, target) for name, array in continuous.items()}
    out["atlas"] = resample_to_grid(atlas, source, target, order=0)
    out["edge_distance_mm"] = ndimage.distance_transform_edt(out["brain"] > 0.5, sampling=spacing).astype(np.float32)
    out["shape"] = np.asarray(target.shape)
    out["affine"] = target.affine
    return out


def _read(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)


def _onto(path, grid: Grid) -> np.ndarray:
    image = nib.load(str(path))
    own = Grid(tuple(image.shape), np.asarray(image.affine, dtype=float))
    return resample_to_grid(np.asarray(image.dataobj, dtype=np.float32), own, grid, order=1)


def _brain_box_grid(brain: np.ndarray, source: Grid, spacing: float) -> Grid:
    """An axis-aligned grid of `spacing` mm around the brain's bounding box plus a margin."""
    index = np.argwhere(brain)
    corners = np.stack([index.min(0), index.max(0)]).T  # (3, 2) voxel indices
    world = source.affine[:3, :3] @ corners + source.affine[:3, 3:4]
    low, high = world.min(1) - MARGIN_MM, world.max(1) + MARGIN_MM
    shape = np.ceil((high - low) / spacing / SHAPE_MULTIPLE).astype(int) * SHAPE_MULTIPLE
    centre = (low + high) / 2
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = centre - spacing * (shape - 1) / 2
    return Grid(tuple(int(s) for s in shape), affine)


def _downsample(array: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """Resample with a Gaussian pre-blur matched to the spacing ratio (no aliasing)."""
    ratio = np.asarray(target.spacing) / np.asarray(source.spacing)
    sigma = np.sqrt(np.maximum(ratio**2 - 1.0, 0.0)) / 2.355
    smoothed = ndimage.gaussian_filter(array.astype(np.float32), sigma) if np.any(sigma > 0) else array
    return resample_to_grid(smoothed.astype(np.float32), source, target, order=1)
