"""The selected latent's overlay node: one node, redrawn in place while the user steps through latents.

The map arrives from the worker's `latent_map` job as a file on the input's grid
and geometry. The threshold slider is a fraction of the map's peak; changing it
or the style (colour-mapped foreground volume or thresholded labelmap) needs no
worker: the last map is kept here. A style change replaces the node (the two
styles are different node classes); stepping and thresholds keep it.

As in the browser viewer (`MedSegLensLib.latent_focus`, one rule for both): a
newly shown latent moves the slice views to where it fires most in this case,
and the colour map spans the p50..p99 of its activations here instead of
threshold..peak (`focus` holds the range for a legend, in activation units).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..latent_focus import LatentFocus, latent_focus

STYLES = ("volume", "labelmap")


class LatentOverlay:
    """The overlay node of a case and the map it shows."""

    def __init__(self, scene: Any, scene_api: ModuleType, reference_node: Any, case_name: str):
        self.scene, self.scene_api = scene, scene_api
        self.reference_node, self.case_name = reference_node, case_name
        self.node = None
        self.style = "volume"
        self.fraction = 0.5
        self.latent: int | None = None
        self._map: tuple[np.ndarray, Any] | None = None
        self.peak = 0.0
        self.focus: LatentFocus | None = None

    @property
    def threshold(self) -> float:
        return self.fraction * self.peak

    def _name(self) -> str:
        return f"{self.case_name} latent {self.latent}"

    def show(self, activation: np.ndarray, grid: Any, latent: int, jump: bool = True) -> Any:
        """Show `latent`'s map: the existing node is updated in place, else one is created; with `jump`, a latent
        other than the one shown moves the slice views to where it fires most."""
        moved = jump and self.latent != int(latent)
        self._map, self.latent = (np.asarray(activation, dtype=np.float32), grid), int(latent)
        self.peak = float(self._map[0].max()) if self._map[0].size else 0.0
        self.focus = latent_focus(self._map[0])
        if self.node is not None and self.node.GetScene() is self.scene:
            self.scene_api.update_latent_overlay(self.node, self._map[0], grid, threshold=self.threshold,
                                                 latent=self.latent, name=self._name())
        else:
            self.node = self.scene_api.add_latent_overlay(self.scene, self._map[0], grid, self.reference_node,
                                                          self._name(), style=self.style, threshold=self.threshold,
                                                          latent=self.latent)
        self._colour_range()
        if moved:
            self.jump_to(self.focus.focus_ras(grid.affine))
        return self.node

    def _colour_range(self) -> None:
        """The colour map over the latent's own p50..p99 here (a volume-style node; the threshold stays)."""
        if self.node is None or self.style != "volume" or self.focus is None or self.focus.focus_voxel is None:
            return
        self.node.GetDisplayNode().SetWindowLevelMinMax(*self.focus.window())

    def jump_to(self, ras) -> None:
        """Move every slice view of the scene through `ras` (mm); nothing when None."""
        if ras is None:
            return
        for index in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
            self.scene.GetNthNodeByClass(index, "vtkMRMLSliceNode").JumpSliceByOffsetting(*(float(v) for v in ras))

    def set_fraction(self, fraction: float) -> None:
        """Show voxels from `fraction` of the peak up (0..1)."""
        if not 0.0 <= float(fraction) <= 1.0:
            raise ParameterError(f"overlay threshold {fraction} must be a fraction of the peak between 0 and 1")
        self.fraction = float(fraction)
        if self.node is None or self._map is None:
            return
        if self.style == "volume":
            self.scene_api.set_overlay_threshold(self.node, self.threshold, self.peak)
            self._colour_range()
        else:
            self.scene_api.update_latent_overlay(self.node, self._map[0], self._map[1], threshold=self.threshold,
                                                 latent=self.latent)

    def set_style(self, style: str) -> Any:
        """Switch between "volume" and "labelmap"; the current map is shown again in a node of that style."""
        if style not in STYLES:
            raise ParameterError(f"overlay style {style!r} is not one of {', '.join(STYLES)}")
        if style == self.style:
            return self.node
        self.style = style
        if self.node is None or self._map is None:
            return None
        self.remove()
        return self.show(self._map[0], self._map[1], self.latent, jump=False)

    def remove(self) -> None:
        """Take the overlay node out of the scene (a new one is made by the next `show`)."""
        if self.node is not None and self.node.GetScene() is self.scene:
            self.scene_api.remove_node(self.scene, self.node)
        self.node = None
