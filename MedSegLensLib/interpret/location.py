"""Where a latent fires, from its activation mass per label of the cases' location atlases.

Shares are of activation mass (value x volume) at or above the latent's firing
threshold, summed over all cases, so strong activations weigh more than faint
ones and activity below the level that marks its class does not count. Lobes merge their cortex and white
matter ("left frontal"); other atlas regions stay as they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..synth.location_atlas import ATLAS_LABELS

LOBES = ("frontal", "parietal", "temporal", "occipital")


def _group_of(name: str) -> str:
    for lobe in LOBES:
        for depth in (" cortex", " white matter"):
            if name.endswith(f"{lobe}{depth}"):
                return name[: -len(depth)]
    return name


def _side_of(name: str) -> str:
    return next((side for side in ("left", "right") if name.startswith(side + " ")), "midline")


REGION_GROUPS: tuple[str, ...] = tuple(dict.fromkeys(_group_of(n) for c, n in sorted(ATLAS_LABELS.items()) if c))
_GROUP_INDEX = np.array([REGION_GROUPS.index(_group_of(ATLAS_LABELS[c])) if c else -1 for c in sorted(ATLAS_LABELS)])
_SIDE_INDEX = np.array(
    [("left", "right", "midline").index(_side_of(ATLAS_LABELS[c])) if c else -1 for c in sorted(ATLAS_LABELS)]
)


@dataclass
class Location:
    """outside_brain: share of all mass outside the brain; the rest are shares of the in-brain mass."""

    outside_brain: float
    left: float
    right: float
    midline: float
    regions: list[tuple[str, float]]  # the largest region groups, largest first

    def to_json(self) -> dict:
        out = asdict(self)
        out["regions"] = [{"region": name, "share": share} for name, share in self.regions]
        return out


def summarise_location(region_mass: np.ndarray, top: int = 3) -> Location | None:
    """Location of one latent from its mass per atlas label (index = label value); None without mass."""
    total = float(region_mass.sum())
    if total <= 0:
        return None
    brain = region_mass[1:]
    inside = float(brain.sum())
    groups = np.bincount(_GROUP_INDEX[1:], weights=brain, minlength=len(REGION_GROUPS))
    sides = np.bincount(_SIDE_INDEX[1:], weights=brain, minlength=3)
    scale = 1.0 / inside if inside > 0 else 0.0
    order = np.argsort(-groups, kind="stable")[:top]
    return Location(
        outside_brain=round(1.0 - inside / total, 4),
        left=round(float(sides[0]) * scale, 4),
        right=round(float(sides[1]) * scale, 4),
        midline=round(float(sides[2]) * scale, 4),
        regions=[(REGION_GROUPS[g], round(float(groups[g]) * scale, 4)) for g in order if groups[g] > 0],
    )
