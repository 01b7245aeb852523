"""One synthetic case: anatomy, tumour, contrasts, scanner, in that order.

All randomness of a case comes from one `numpy.random.Generator` seeded by a
`SeedSequence` over (cohort seed, population, case index), so a case is
reproduced exactly from those three numbers, whatever else is generated.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..data.case import MODALITIES
from ..data.geometry import Grid
from .anatomy import MassEffect, sample_pose, smooth_displacement, warp_anatomy
from .contrast import add_tumour, healthy_images
from .location_atlas import ATLAS_LABELS
from .populations import PopulationShift
from .random_fields import uniform
from .scanner import acquire, coil_bias, sample_protocol
from .templates import Templates
from .tumour import ED, ET, NCR, grow_tumour, merge_tumours, plan_tumour


@dataclass
class SyntheticCase:
    """A generated case: images in scanner units (0 outside the brain) and its maps, on `grid`."""

    case_id: str
    grid: Grid
    images: dict[str, np.ndarray]
    label: np.ndarray  # uint8 BraTS labels
    tissue: np.ndarray  # uint8 0 bg, 1 CSF, 2 GM, 3 WM
    atlas: np.ndarray  # uint8 coarse location atlas
    info: dict = field(default_factory=dict)


def case_seed(seed: int, population: str, index: int) -> np.random.SeedSequence:
    """The seed of case `index` of a cohort (stable across runs and platforms)."""
    return np.random.SeedSequence([int(seed), zlib.crc32(population.encode("utf-8")), int(index)])


def synthesize_case(
    case_id: str, shift: PopulationShift, templates: Templates, seed: np.random.SeedSequence
) -> SyntheticCase:
    rng = np.random.default_rng(seed)
    grid, spacing = templates.grid, templates.spacing
    pose = sample_pose(rng, shift, templates)
    displacement = smooth_displacement(rng, templates, uniform(rng, shift.deformation_mm))
    plan = plan_tumour(rng, shift, templates) if shift.has_tumour else None
    # further lesions (metastases); drawn only when the population can have several, so the
    # single-lesion populations' random streams (and files) stay as they were
    extra = [plan_tumour(rng, shift, templates) for _ in range(_extra_lesions(rng, shift))] if plan else []
    mass = centre = None
    if plan is not None:
        centre = pose.to_case(plan.centre_template_mm)
        mass = MassEffect(centre, plan.mass_effect, plan.core_radius_mm)
    anatomy = warp_anatomy(templates, pose, displacement, mass)
    images = healthy_images(rng, anatomy, uniform(rng, shift.myelination), spacing)
    enhancement = uniform(rng, shift.enhancement)
    edema_contrast = uniform(rng, shift.edema_contrast)
    label = np.zeros(grid.shape, dtype=np.uint8)
    if plan is not None:
        tumour = grow_tumour(rng, plan, centre, anatomy, grid)
        for other in extra:
            other_centre = pose.to_case(other.centre_template_mm)
            tumour = merge_tumours(tumour, grow_tumour(rng, other, other_centre, anatomy, grid))
        add_tumour(rng, images, tumour, enhancement, edema_contrast, spacing)
        label = tumour.label
    brain = (anatomy.brain > 0.5) | (label > 0)
    protocol = sample_protocol(rng, shift)
    bias = coil_bias(rng, grid.shape, protocol, spacing)
    scans = {name: acquire(rng, images[name], brain, bias, protocol, spacing) for name in MODALITIES}
    tissue = np.where(brain, 1 + np.argmax(np.stack([anatomy.csf, anatomy.gm, anatomy.wm]), axis=0), 0).astype(np.uint8)
    atlas = _fill_inside(anatomy.atlas, brain)
    info = _describe(shift, pose, protocol, plan, centre, label, atlas, grid)
    info.update(enhancement=enhancement, edema_contrast=edema_contrast)
    if plan is not None:
        info["tumour"]["lesions"] = 1 + len(extra)
        info["tumour"]["lesion_radii_mm"] = [plan.core_radius_mm] + [p.core_radius_mm for p in extra]
    return SyntheticCase(case_id, grid, scans, label, tissue, atlas, info)


def _extra_lesions(rng: np.random.Generator, shift: PopulationShift) -> int:
    low, high = int(round(shift.lesion_count[0])), int(round(shift.lesion_count[1]))
    if high <= 1:
        return 0
    return int(rng.integers(low, high + 1)) - 1


def _fill_inside(atlas: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Give every brain voxel a location: gaps (at the brain's edge, in the tumour) take the nearest label."""
    gaps = brain & (atlas == 0)
    if gaps.any() and (atlas > 0).any():
        nearest = ndimage.distance_transform_edt(atlas == 0, return_distances=False, return_indices=True)
        atlas = np.where(gaps, atlas[tuple(nearest)], atlas)
    return np.where(brain, atlas, 0).astype(np.uint8)


def _describe(shift, pose, protocol, plan, centre, label, atlas, grid: Grid) -> dict:
    """What was drawn for the case and what came out (volumes in cm^3), for the cohort's record."""
    voxel_cc = float(np.prod(grid.spacing)) / 1000.0
    info: dict = {
        "population": shift.name,
        "head_scale": float(np.cbrt(abs(np.linalg.det(pose.matrix)))),
        "scanner": protocol.as_dict(),
        "volume_cc": {
            name: float(np.count_nonzero(label == value) * voxel_cc)
            for name, value in (("NCR", NCR), ("ED", ED), ("ET", ET))
        },
    }
    info["volume_cc"]["WT"] = float(np.count_nonzero(label) * voxel_cc)
    if plan is not None:
        index = np.rint(np.linalg.inv(grid.affine)[:3] @ np.append(centre, 1.0)).astype(int)
        index = np.clip(index, 0, np.asarray(grid.shape) - 1)
        info["tumour"] = {
            "location_group": plan.location_group,
            "centre_mm": [float(c) for c in centre],
            "centre_region": ATLAS_LABELS[int(atlas[tuple(index)])],
            "core_radius_mm": plan.core_radius_mm,
            "necrosis_fraction": plan.necrosis_fraction,
            "enhancing_fraction": plan.enhancing_fraction,
            "edema_extent_mm": plan.edema_extent_mm,
            "mass_effect": plan.mass_effect,
        }
    return info
