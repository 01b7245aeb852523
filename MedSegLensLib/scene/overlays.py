"""Latent activation maps as overlay nodes in the input's exact geometry.

Two styles, both ordinary Slicer data:
- "volume": a scalar volume with a colour map, window/level and a lower
  threshold (voxels below it are transparent), shown as the slice views'
  foreground layer;
- "labelmap": the voxels at or above the threshold as a one-label labelmap.
Stepping through latents reuses one node: `update_latent_overlay` swaps the
voxels in place, keeping the node, its display settings and the views on it.
"""

from __future__ import annotations

import numpy as np

from ..data.geometry import Grid
from ..errors import ParameterError
from .case_volumes import ROLE_ATTRIBUTE
from .hierarchy import place_beside
from .volume_arrays import add_volume_node, check_grid, node_grid, onto_node_grid, set_node_array

STYLES = ("volume", "labelmap")
DEFAULT_COLORMAP = "vtkMRMLColorTableNodeCool1"
MASK_COLOR = (0.0, 0.75, 1.0)
LATENT_ATTRIBUTE = "MedSegLens.Latent"
THRESHOLD_ATTRIBUTE = "MedSegLens.Threshold"
_MASK_TABLE_ATTRIBUTE = "MedSegLens.ColorTable"


def default_threshold(activation: np.ndarray) -> float:
    """Half the map's peak: the strongest firing region, which is what a user looks for first."""
    peak = float(np.max(activation)) if activation.size else 0.0
    return 0.5 * peak if peak > 0 else 0.0


def _check_map(activation: np.ndarray, grid: Grid) -> np.ndarray:
    check_grid(activation, grid, "activation map")
    activation = np.asarray(activation, dtype=np.float32)
    if not np.all(np.isfinite(activation)):
        raise ParameterError("activation map holds NaN or Inf values; the latent map computation failed")
    return activation


def _mask_color_table(scene):
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLColorTableNode")
        if node.GetAttribute(_MASK_TABLE_ATTRIBUTE) == "latent-mask":
            return node
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "MedSegLens latent mask")
    table.SetAttribute(_MASK_TABLE_ATTRIBUTE, "latent-mask")
    table.SetTypeToUser()
    table.SetNumberOfColors(2)
    table.SetColor(0, "Background", 0.0, 0.0, 0.0, 0.0)
    table.SetColor(1, "Latent active", *MASK_COLOR, 1.0)
    return table


def _voxels_for(style: str, activation: np.ndarray, grid: Grid, target: Grid, threshold: float) -> np.ndarray:
    """What the node stores, in its own geometry: the map itself, or the mask of voxels at/above threshold."""
    if style == "labelmap":
        mask = ((activation >= threshold) & (activation > 0)).astype(np.uint8)
        return onto_node_grid(mask, grid, target, order=0)
    return onto_node_grid(activation, grid, target, order=1)


def _show_threshold(node, style: str, threshold: float, peak: float) -> None:
    if style == "volume":
        set_overlay_threshold(node, threshold, peak)
    else:
        node.SetAttribute(THRESHOLD_ATTRIBUTE, repr(threshold))


def _style_of(node) -> str:
    return "labelmap" if node.IsA("vtkMRMLLabelMapVolumeNode") else "volume"


def set_overlay_threshold(node, threshold: float, peak: float | None = None) -> None:
    """Show a volume-style overlay from `threshold` up (window/level spans threshold..peak)."""
    if _style_of(node) != "volume":
        raise ParameterError(f"overlay '{node.GetName()}' is a labelmap; pass the map again to update_latent_overlay")
    display = node.GetDisplayNode()
    if peak is None:
        peak = float(node.GetImageData().GetScalarRange()[1])
    lower = max(float(threshold), np.finfo(np.float32).tiny)
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(lower, max(peak, lower * (1 + 1e-6)))
    display.AutoThresholdOff()
    display.SetApplyThreshold(1)
    display.SetThreshold(lower, float(np.finfo(np.float32).max))
    node.SetAttribute(THRESHOLD_ATTRIBUTE, repr(float(threshold)))


def set_overlay_window(node, low: float, high: float) -> None:
    """Span a volume-style overlay's colour map over `low`..`high` (activation units); the threshold stays.

    The viewer, the Slicer module and `medseglens render` colour a latent over its own range in the case
    (`latent_focus`: percentiles of its positive activations), which need not start at the threshold.
    """
    if _style_of(node) != "volume":
        raise ParameterError(f"overlay '{node.GetName()}' is a labelmap; it has no colour range")
    low = float(low)
    node.GetDisplayNode().AutoWindowLevelOff()
    node.GetDisplayNode().SetWindowLevelMinMax(low, max(float(high), low * (1 + 1e-6), low + 1e-12))


def add_latent_overlay(
    scene,
    activation: np.ndarray,
    grid: Grid,
    reference_node,
    name: str,
    style: str = "volume",
    threshold: float | None = None,
    latent: int | None = None,
    colormap_id: str = DEFAULT_COLORMAP,
):
    """A new overlay node for an activation map on `grid` (normally `case.grid`)."""
    if style not in STYLES:
        raise ParameterError(f"overlay style '{style}' is not one of {', '.join(STYLES)}")
    if style == "volume" and scene.GetNodeByID(colormap_id) is None:
        raise ParameterError(
            f"colour map '{colormap_id}' is not in the scene; use a colour node ID such as {DEFAULT_COLORMAP}"
        )
    activation = _check_map(activation, grid)
    threshold = default_threshold(activation) if threshold is None else float(threshold)
    target = node_grid(reference_node)
    class_name = "vtkMRMLLabelMapVolumeNode" if style == "labelmap" else "vtkMRMLScalarVolumeNode"
    node = add_volume_node(scene, _voxels_for(style, activation, grid, target, threshold), target, name, class_name)
    node.SetAttribute(ROLE_ATTRIBUTE, "latent-overlay")
    color = _mask_color_table(scene).GetID() if style == "labelmap" else colormap_id
    node.GetDisplayNode().SetAndObserveColorNodeID(color)
    _show_threshold(node, style, threshold, float(activation.max()))
    _set_latent(node, latent)
    place_beside(scene, node, reference_node)
    return node


def update_latent_overlay(
    node,
    activation: np.ndarray,
    grid: Grid,
    threshold: float | None = None,
    latent: int | None = None,
    name: str | None = None,
) -> None:
    """Show another map (or threshold) in an existing overlay node, keeping its geometry and display."""
    activation = _check_map(activation, grid)
    threshold = default_threshold(activation) if threshold is None else float(threshold)
    style = _style_of(node)
    target = node_grid(node)
    set_node_array(node, _voxels_for(style, activation, grid, target, threshold), target)
    _show_threshold(node, style, threshold, float(activation.max()))
    _set_latent(node, latent)
    if name:
        node.SetName(name)


def _set_latent(node, latent: int | None) -> None:
    if latent is None:
        node.RemoveAttribute(LATENT_ATTRIBUTE)
    else:
        node.SetAttribute(LATENT_ATTRIBUTE, str(int(latent)))


def overlay_latent(node) -> int | None:
    """The latent index an overlay node shows (None when not recorded)."""
    value = node.GetAttribute(LATENT_ATTRIBUTE)
    return int(value) if value else None
