"""Glioma geometry: where it grows, its lobulated core, necrosis, enhancing rim and edema.

The core is a union of one to three jittered ellipsoids whose border is
perturbed by a smooth random field (lobulated, irregular). Necrosis is an inner
level set of the same function, so the viable rim wraps around it; a random
part of the rim enhances. Edema spreads from the core with a travel time that
is short through white matter, slow through grey matter and nearly blocked by
CSF, so it follows white-matter tracts and spares the cortex.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..data.geometry import Grid
from .anatomy import Anatomy
from .location_atlas import PLACEMENT_GROUPS
from .populations import PopulationShift
from .random_fields import smooth_field, uniform
from .templates import Templates

NCR, ED, ET = 1, 2, 3
EDEMA_FLOOR = 0.6  # edema signal at its labelled border, relative to its peak
_LOBE_GROUPS = ("frontal", "temporal", "parietal", "occipital")
_NEIGHBOURS = ndimage.generate_binary_structure(3, 2)  # 18-connected steps


@dataclass(frozen=True)
class TumourPlan:
    """What is drawn per case before the anatomy is warped."""

    centre_template_mm: np.ndarray
    location_group: str
    core_radius_mm: float
    lobulation: float
    necrosis_fraction: float
    enhancing_fraction: float
    edema_extent_mm: float
    mass_effect: float


@dataclass
class Tumour:
    """Hard labels plus soft (partial-volume) compartment maps for the contrast model."""

    label: np.ndarray  # uint8: 0, NCR, ED, ET
    necrosis: np.ndarray  # float32 partial-volume fractions, summing to <= 1 with the next two
    solid: np.ndarray  # viable, non-enhancing tumour
    enhancing: np.ndarray
    edema: np.ndarray  # float32 edema strength in [0, 1]


def plan_tumour(rng: np.random.Generator, shift: PopulationShift, templates: Templates) -> TumourPlan:
    radius = uniform(rng, shift.core_radius_mm)
    groups = list(shift.location_weights)
    weights = np.asarray([shift.location_weights[g] for g in groups])
    group = groups[int(rng.choice(len(groups), p=weights / weights.sum()))]
    centre = _choose_centre(rng, templates, group, radius, shift.midline_max_mm)
    return TumourPlan(
        centre_template_mm=centre,
        location_group=group,
        core_radius_mm=radius,
        lobulation=uniform(rng, shift.lobulation),
        necrosis_fraction=uniform(rng, shift.necrosis_fraction),
        enhancing_fraction=uniform(rng, shift.enhancing_fraction),
        edema_extent_mm=uniform(rng, shift.edema_extent_mm),
        mass_effect=uniform(rng, shift.mass_effect),
    )


def _choose_centre(
    rng: np.random.Generator, templates: Templates, group: str, radius_mm: float, midline_max_mm: float
) -> np.ndarray:
    """A template point in `group`: in white matter for the lobes, away from CSF and the brain's edge."""
    grid = templates.grid
    allowed = np.isin(templates.atlas, PLACEMENT_GROUPS[group]) & (templates.csf < 0.3)
    if group in _LOBE_GROUPS:
        allowed &= templates.wm >= 0.4
    x_mm = grid.affine[0, 0] * np.arange(grid.shape[0]) + grid.affine[0, 3]
    allowed &= (np.abs(x_mm) <= midline_max_mm)[:, None, None]
    depth = min(0.6 * radius_mm, 12.0)
    while depth > 0:
        candidates = np.argwhere(allowed & (templates.edge_distance_mm >= depth))
        if len(candidates):
            break
        depth -= templates.spacing
    else:
        candidates = np.argwhere(allowed)
    index = candidates[rng.integers(len(candidates))] + rng.uniform(-0.5, 0.5, 3)
    return grid.affine[:3, :3] @ index + grid.affine[:3, 3]


def grow_tumour(
    rng: np.random.Generator, plan: TumourPlan, centre_mm: np.ndarray, anatomy: Anatomy, grid: Grid
) -> Tumour:
    """Draw the tumour around `centre_mm` (case space) into the warped `anatomy`."""
    spacing = grid.spacing[0]
    radius = plan.core_radius_mm
    reach = 1.9 * radius + 1.4 * plan.edema_extent_mm + 3 * spacing
    box = _box(grid, centre_mm, reach)
    local = tuple(np.asarray(a)[box] for a in (anatomy.brain, anatomy.wm, anatomy.gm))
    brain, wm, gm = local[0] > 0.5, local[1], local[2]
    shape = brain.shape
    index = (
        np.indices(shape, dtype=np.float32).reshape(3, -1) + np.array([s.start for s in box], dtype=np.float32)[:, None]
    )
    offset = (grid.affine[:3, :3] @ index + grid.affine[:3, 3:4] - centre_mm[:, None]).astype(np.float32)

    shape_fn = _lobes(rng, offset, radius).reshape(shape)
    shape_fn += plan.lobulation * smooth_field(rng, shape, spacing, 0.8 * radius)
    core = (shape_fn < 1.0) & brain
    inner = shape_fn + 0.5 * plan.lobulation * smooth_field(rng, shape, spacing, 0.5 * radius)
    necrosis = core & (inner < plan.necrosis_fraction)
    rim = core & ~necrosis
    enhancing = np.zeros(shape, dtype=bool)
    if rim.any() and plan.enhancing_fraction > 0:
        pattern = smooth_field(rng, shape, spacing, 0.7 * radius)
        enhancing = rim & (pattern >= np.quantile(pattern[rim], 1.0 - plan.enhancing_fraction))
    solid = rim & ~enhancing

    strength = np.zeros(shape, dtype=np.float32)
    edema = np.zeros(shape, dtype=bool)
    if plan.edema_extent_mm > 0 and core.any():
        travel = _travel_time(core, brain, wm, gm, spacing, 1.5 * plan.edema_extent_mm)
        extent = plan.edema_extent_mm * (1.0 + 0.35 * smooth_field(rng, shape, spacing, 15.0))
        edema = brain & ~core & (travel < extent)
        # the signal fades with distance but stays visible up to the labelled border
        strength[edema] = EDEMA_FLOOR + (1 - EDEMA_FLOOR) * np.clip(1.0 - travel[edema] / extent[edema], 0.0, 1.0)

    label = np.zeros(grid.shape, dtype=np.uint8)
    label[box][edema] = ED
    label[box][necrosis | solid] = NCR
    label[box][enhancing] = ET
    return Tumour(
        label=label,
        necrosis=_soft(necrosis, box, grid),
        solid=_soft(solid, box, grid),
        enhancing=_soft(enhancing, box, grid),
        edema=_place(ndimage.gaussian_filter(strength, 0.5), box, grid),
    )


_LABEL_RANK = np.array([0, 2, 1, 3], dtype=np.uint8)  # background < edema < NCR < ET


def merge_tumours(first: Tumour, second: Tumour) -> Tumour:
    """Two lesions in one brain: tumour labels win over edema, ET over NCR; soft maps take the maximum."""
    label = np.where(_LABEL_RANK[second.label] > _LABEL_RANK[first.label], second.label, first.label).astype(np.uint8)
    return Tumour(
        label=label,
        necrosis=np.maximum(first.necrosis, second.necrosis),
        solid=np.maximum(first.solid, second.solid),
        enhancing=np.maximum(first.enhancing, second.enhancing),
        edema=np.maximum(first.edema, second.edema),
    )


def _box(grid: Grid, centre_mm: np.ndarray, reach_mm: float) -> tuple[slice, ...]:
    centre = np.linalg.inv(grid.affine)[:3] @ np.append(centre_mm, 1.0)
    half = reach_mm / np.asarray(grid.spacing)
    low = np.clip(np.floor(centre - half), 0, None).astype(int)
    high = np.minimum(np.ceil(centre + half).astype(int) + 1, grid.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def _lobes(rng: np.random.Generator, offset: np.ndarray, radius: float) -> np.ndarray:
    """min over 1-3 random ellipsoids of the normalised radius (< 1 inside)."""
    best = np.full(offset.shape[1], np.inf, dtype=np.float32)
    for lobe in range(int(rng.integers(1, 4))):
        size = radius * (1.0 if lobe == 0 else rng.uniform(0.5, 0.8))
        shift = np.zeros(3) if lobe == 0 else _unit(rng) * radius * rng.uniform(0.3, 0.6)
        axes = _orthonormal(rng)
        radii = size * rng.uniform(0.75, 1.25, 3)
        local = axes.T @ (offset - shift[:, None].astype(np.float32))
        best = np.minimum(best, np.sqrt(np.sum((local / radii[:, None]) ** 2, axis=0)))
    return best


def _unit(rng: np.random.Generator) -> np.ndarray:
    vector = rng.standard_normal(3)
    return vector / np.linalg.norm(vector)


def _orthonormal(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def _travel_time(
    source: np.ndarray, brain: np.ndarray, wm: np.ndarray, gm: np.ndarray, spacing: float, limit_mm: float
) -> np.ndarray:
    """Travel time (mm of white-matter-equivalent path) from `source` through the brain."""
    speed = np.where(brain, np.maximum(wm + 0.3 * gm, 0.03), 1e-6).astype(np.float32)
    step = spacing / speed
    time = np.where(source, 0.0, np.inf).astype(np.float32)
    for _ in range(int(np.ceil(limit_mm / spacing)) * 2 + 2):
        reached = ndimage.grey_erosion(time, footprint=_NEIGHBOURS, mode="constant", cval=np.inf) + step
        updated = np.minimum(time, reached)
        if np.array_equal(updated, time):
            break
        time = updated
    return np.minimum(time, limit_mm * 4)


def _soft(mask: np.ndarray, box: tuple[slice, ...], grid: Grid) -> np.ndarray:
    """Partial-volume fraction of a compartment (a sub-voxel blur of its mask)."""
    return _place(ndimage.gaussian_filter(mask.astype(np.float32), 0.6), box, grid)


def _place(local: np.ndarray, box: tuple[slice, ...], grid: Grid) -> np.ndarray:
    full = np.zeros(grid.shape, dtype=np.float32)
    full[box] = local
    return full
