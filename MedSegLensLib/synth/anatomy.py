"""Per-case anatomy: the template warped by a random pose, a smooth deformation and mass effect.

Everything is a pull-back: for each voxel of the case we compute where it comes
from in the template, then interpolate the template there. The chain, in world
millimetres, is  template <- inverse(pose) <- (case voxel - displacement), where
the displacement is a smooth random field plus the tumour's radial push.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .populations import PopulationShift
from .random_fields import smooth_field, uniform
from .templates import Templates

DEFORMATION_LENGTH_MM = 40.0
TRANSLATION_MM = 4.0


@dataclass(frozen=True)
class Pose:
    """Global similarity-plus-anisotropy transform from template to case, about the grid centre."""

    matrix: np.ndarray  # 3x3: rotation @ diag(scales)
    translation_mm: np.ndarray
    centre_mm: np.ndarray

    def to_case(self, point_mm: np.ndarray) -> np.ndarray:
        """Where a template point lands in the case (ignoring the small smooth deformation)."""
        return self.centre_mm + self.translation_mm + self.matrix @ (np.asarray(point_mm) - self.centre_mm)


@dataclass(frozen=True)
class MassEffect:
    """A radial push away from `centre_mm`: tissue at distance r came from r * (1 - a exp(-r^2 / 2 s^2))."""

    centre_mm: np.ndarray
    amplitude: float  # a < 1 keeps the mapping one-to-one
    reach_mm: float  # s


@dataclass
class Anatomy:
    """The template's images and maps in one case's space."""

    t1: np.ndarray
    t2: np.ndarray
    brain: np.ndarray
    csf: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    atlas: np.ndarray


def sample_pose(rng: np.random.Generator, shift: PopulationShift, templates: Templates) -> Pose:
    scale = uniform(rng, shift.head_scale) * (1.0 + rng.uniform(-shift.axis_jitter, shift.axis_jitter, 3))
    angles = np.deg2rad(rng.uniform(-shift.rotation_deg, shift.rotation_deg, 3))
    rotation = _rotation(angles)
    centre = templates.grid.affine[:3, :3] @ ((np.asarray(templates.grid.shape) - 1) / 2) + templates.grid.affine[:3, 3]
    return Pose(rotation @ np.diag(scale), rng.uniform(-TRANSLATION_MM, TRANSLATION_MM, 3), centre)


def _rotation(angles: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def smooth_displacement(rng: np.random.Generator, templates: Templates, amplitude_mm: float) -> np.ndarray:
    """(3, X, Y, Z) displacement in mm, smooth over ~`DEFORMATION_LENGTH_MM`."""
    shape, spacing = templates.grid.shape, templates.spacing
    return np.stack([smooth_field(rng, shape, spacing, DEFORMATION_LENGTH_MM) * amplitude_mm for _ in range(3)])


def warp_anatomy(
    templates: Templates, pose: Pose, displacement_mm: np.ndarray, mass: MassEffect | None = None
) -> Anatomy:
    """Interpolate every template map at the case's pulled-back positions."""
    grid = templates.grid
    index = np.indices(grid.shape, dtype=np.float32).reshape(3, -1)
    world = grid.affine[:3, :3].astype(np.float32) @ index + grid.affine[:3, 3:4].astype(np.float32)
    world -= displacement_mm.reshape(3, -1)
    if mass is not None and mass.amplitude > 0:
        offset = world - mass.centre_mm[:, None].astype(np.float32)
        squared = np.einsum("ij,ij->j", offset, offset)
        world -= offset * (mass.amplitude * np.exp(-squared / (2 * mass.reach_mm**2)))
    inverse_pose = np.linalg.inv(pose.matrix)
    source = inverse_pose @ (world - (pose.centre_mm + pose.translation_mm)[:, None]) + pose.centre_mm[:, None]
    inverse_affine = np.linalg.inv(grid.affine)
    coords = (inverse_affine[:3, :3] @ source + inverse_affine[:3, 3:4]).astype(np.float32)

    def sample(array: np.ndarray, order: int) -> np.ndarray:
        values = ndimage.map_coordinates(array, coords, order=order, mode="constant", cval=0.0, prefilter=False)
        return values.reshape(grid.shape)

    return Anatomy(
        t1=sample(templates.t1, 1),
        t2=sample(templates.t2, 1),
        brain=sample(templates.brain, 1),
        csf=sample(templates.csf, 1),
        gm=sample(templates.gm, 1),
        wm=sample(templates.wm, 1),
        atlas=sample(templates.atlas, 0),
    )
