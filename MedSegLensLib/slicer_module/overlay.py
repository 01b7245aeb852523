"""The selected latent's overlay node: one node, redrawn in place while the user steps through latents.

The map arrives from the worker's `latent_map` job as a file on the input's grid
and geometry. Changing the threshold or the style (colour-mapped foreground
volume or thresholded labelmap) needs no worker: the last map is kept here. A
style change replaces the node (the two styles are different node classes);
stepping and thresholds keep it.

One rule with the browser viewer (`MedSegLensLib.latent_focus`): a newly shown
latent moves the slice views to where it fires most in this case; the heat
colour map (`HEAT_COLORMAP`, red to yellow) spans the p50..p99 of its
activations here; the threshold is in activation units (0..peak) and starts at
the range's lower end for each new latent; `legend()` is the legend text the
viewer's rule writes.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..latent_focus import HEAT_COLORMAP, LatentFocus, latent_focus, legend_text

STYLES = ("volume", "labelmap")


class LatentOverlay:
    """The overlay node of a case and the map it shows."""

    def __init__(self, scene: Any, scene_api: ModuleType, reference_node: Any, case_name: str):
        self.scene, self.scene_api = scene, scene_api
        self.reference_node, self.case_name = reference_node, case_name
        self.node = None
        self.style = "volume"
        self.user_threshold: float | None = None  # activation units; None: the latent's range's lower end
        self.latent: int | None = None
        self._map: tuple[np.ndarray, Any] | None = None
        self.peak = 0.0
        self.focus: LatentFocus | None = None

    @property
    def threshold(self) -> float:
        """Transparent below this activation: the user's, else the shared rule's (the range's lower end)."""
        if self.user_threshold is not None:
            return self.user_threshold
        return self.focus.low if self.focus is not None else 0.0

    def legend(self) -> str:
        """The legend under the latent table ("" without an overlay), written by the viewer's rule."""
        if self.focus is None or self._map is None:
            return ""
        legend = self.focus.legend(self.threshold)
        ras = self.focus.focus_ras(self._map[1].affine)
        legend["focus_ras"] = None if ras is None else [round(v, 1) for v in ras]
        legend["latent"] = self.latent
        return legend_text(legend)

    def _name(self) -> str:
        return f"{self.case_name} latent {self.latent}"

    def show(self, activation: np.ndarray, grid: Any, latent: int, jump: bool = True) -> Any:
        """Show `latent`'s map: the existing node is updated in place, else one is created; with `jump`, a latent
        other than the one shown moves the slice views to where it fires most."""
        moved = jump and self.latent != int(latent)
        if self.latent != int(latent):
            self.user_threshold = None  # a new latent starts at its own range's lower end
        self._map, self.latent = (np.asarray(activation, dtype=np.float32), grid), int(latent)
        self.peak = float(self._map[0].max()) if self._map[0].size else 0.0
        self.focus = latent_focus(self._map[0])
        if self.node is not None and self.node.GetScene() is self.scene:
            self.scene_api.update_latent_overlay(
                self.node, self._map[0], grid, threshold=self.threshold, latent=self.latent, name=self._name()
            )
        else:
            self.node = self.scene_api.add_latent_overlay(
                self.scene,
                self._map[0],
                grid,
                self.reference_node,
                self._name(),
                style=self.style,
                threshold=self.threshold,
                latent=self.latent,
                colormap_id=HEAT_COLORMAP,
            )
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

    def set_threshold(self, threshold: float) -> None:
        """Show voxels from `threshold` (activation units, 0..peak) up; kept until another latent is shown."""
        if not (np.isfinite(float(threshold)) and float(threshold) >= 0.0):
            raise ParameterError(f"overlay threshold {threshold} must be an activation of 0 or more")
        self.user_threshold = float(threshold)
        if self.node is None or self._map is None:
            return
        if self.style == "volume":
            self.scene_api.set_overlay_threshold(self.node, self.threshold, self.peak)
            self._colour_range()
        else:
            self.scene_api.update_latent_overlay(
                self.node, self._map[0], self._map[1], threshold=self.threshold, latent=self.latent
            )

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
