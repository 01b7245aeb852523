"""What a latent is scored against: tumour subregions, healthy tissue classes and the tumour boundary.

Healthy tissue classes exclude tumour voxels (a CSF latent must not be credited
with the tumour that sits in white matter). The tumour boundary is the shell of
voxels around the whole tumour (WT = NCR + ED + ET): outside it, with centres
within `shell_mm` of its surface, taken half a voxel beyond the outermost tumour
voxels. It is disjoint from the tumour labels, so an edema latent is not also
credited with the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

TUMOUR_TARGETS: tuple[str, ...] = ("NCR", "ED", "ET", "boundary")
TISSUE_TARGETS: tuple[str, ...] = ("CSF", "GM", "WM", "background")
TARGET_NAMES: dict[str, str] = {
    "NCR": "necrotic / non-enhancing core",
    "ED": "edema",
    "ET": "enhancing tumour",
    "boundary": "tumour boundary",
    "CSF": "CSF",
    "GM": "grey matter",
    "WM": "white matter",
    "background": "outside the brain",
}
DEFAULT_SHELL_MM = 4.0


@dataclass(frozen=True)
class TargetSet:
    """The targets scored in a run: tumour targets always, tissue targets when tissue maps exist."""

    names: tuple[str, ...]

    @classmethod
    def for_maps(cls, with_tissue: bool) -> TargetSet:
        return cls(TUMOUR_TARGETS + (TISSUE_TARGETS if with_tissue else ()))

    @property
    def has_tissue(self) -> bool:
        return "CSF" in self.names

    def index(self, name: str) -> int:
        return self.names.index(name)


def boundary_shell(whole_tumour: np.ndarray, spacing: tuple[float, float, float], shell_mm: float) -> np.ndarray:
    """Voxels outside the whole tumour within `shell_mm` of its surface."""
    if not whole_tumour.any():
        return np.zeros(whole_tumour.shape, dtype=bool)
    outside = ndimage.distance_transform_edt(~whole_tumour, sampling=spacing)
    return ~whole_tumour & (outside - 0.5 * min(spacing) <= shell_mm)


def target_masks(
    targets: TargetSet,
    label: np.ndarray,
    tissue: np.ndarray | None,
    spacing: tuple[float, float, float],
    shell_mm: float = DEFAULT_SHELL_MM,
) -> np.ndarray:
    """(targets, X, Y, Z) boolean masks in `targets.names` order."""
    tumour_free = label == 0
    masks = []
    for name in targets.names:
        if name == "NCR":
            masks.append(label == 1)
        elif name == "ED":
            masks.append(label == 2)
        elif name == "ET":
            masks.append(label == 3)
        elif name == "boundary":
            masks.append(boundary_shell(~tumour_free, spacing, shell_mm))
        else:
            value = {"background": 0, "CSF": 1, "GM": 2, "WM": 3}[name]
            masks.append((tissue == value) & tumour_free)
    return np.stack(masks)
