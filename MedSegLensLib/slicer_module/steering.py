"""Steering in the scene: the request a user builds, the preview node it redraws, and Accept.

The steering itself runs in the worker (`steer` job). Here: a `SteeringRequest`
(latents, one strength each, mode, region) becomes the job's spec through the
steering contract; each result
redraws one preview segmentation node (role "preview"); Accept copies the
latest result into a NEW segmentation node (role "correction") with the
provenance the worker recorded plus the name of the segmentation it corrects.
The model's segmentation and every earlier correction are never modified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..steering_contract import DEFAULT_MARGIN_MM, REGION_KINDS, RegionSpec, SteeringSpec

DEFAULT_REGION = "tumour-margin"  # the panel's default: the predicted tumour plus DEFAULT_MARGIN_MM, as in the viewer
assert DEFAULT_REGION in REGION_KINDS


@dataclass(frozen=True)
class SteeringRequest:
    """What the steering panel holds, checked against the steering contract when it is made."""

    latents: tuple[int, ...]
    strengths: tuple[float, ...]
    mode: str = "additive"
    region: str = "none"
    margin_mm: float = DEFAULT_MARGIN_MM
    region_node: Any = None  # a segmentation node when region == "mask"

    def __post_init__(self) -> None:
        if self.region == "mask" and self.region_node is None:
            raise ParameterError("a mask region needs a segmentation: pick one in 'Region mask'")
        self.spec("(the region node)")

    def spec(self, mask_file: str | None = None) -> dict[str, Any]:
        """The worker's `spec` parameter (`mask_file`: the region node exported as a label file)."""
        margin = float(self.margin_mm) if self.region == "tumour-margin" else 0.0
        region = RegionSpec(self.region, margin, mask_file if self.region == "mask" else None)
        return SteeringSpec(tuple(self.latents), tuple(self.strengths), self.mode, region).to_json()


@dataclass
class SteeringOutcome:
    """A finished `steer` result, read back: labels on `grid` plus what the worker reported."""

    labels: np.ndarray
    grid: Any
    provenance: str  # JSON record
    spec: dict[str, Any]
    dice: dict[str, float] | None = None
    dice_unsteered: dict[str, float] | None = None
    changed_voxels: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def segmentation_mask(segmentation_node: Any, grid: Any) -> np.ndarray:
    """Every segment of a segmentation node, merged, as a 0/1 array on `grid` (any segment names)."""
    import slicer
    from vtkmodules.vtkCommonCore import vtkStringArray

    from ..scene.scratch import scratch_nodes
    from ..scene.volume_arrays import add_volume_node, node_array

    segmentation = segmentation_node.GetSegmentation()
    ids = vtkStringArray()
    for index in range(segmentation.GetNumberOfSegments()):
        ids.InsertNextValue(segmentation.GetNthSegmentID(index))
    if ids.GetNumberOfValues() == 0:
        raise ParameterError(f"'{segmentation_node.GetName()}' has no segments; draw the region before steering in it")
    scene = segmentation_node.GetScene()
    with scratch_nodes(scene):
        reference = add_volume_node(scene, np.zeros(tuple(grid.shape), np.uint8), grid, "MedSegLens mask grid")
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "MedSegLens mask")
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, labelmap, reference, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
        ):
            raise RuntimeError(f"Slicer could not export the segments of '{segmentation_node.GetName()}'")
        mask, _ = node_array(labelmap)
    return (mask > 0).astype(np.uint8)


class SteeringPreview:
    """The preview node of a case and the latest steering outcome shown in it."""

    def __init__(self, scene: Any, scene_api: ModuleType, reference_node: Any, case_name: str):
        self.scene, self.scene_api = scene, scene_api
        self.reference_node, self.case_name = reference_node, case_name
        self.node = None
        self.outcome: SteeringOutcome | None = None
        self.visible = True

    def show(self, outcome: SteeringOutcome, show_3d: bool = False) -> Any:
        """Redraw the preview node with `outcome` (created on first use)."""
        if self.node is not None and self.node.GetScene() is self.scene:
            self.scene_api.update_preview_segmentation(self.node, outcome.labels, outcome.grid, self.reference_node)
        else:
            self.node = self.scene_api.add_brats_segmentation(
                self.scene,
                outcome.labels,
                outcome.grid,
                self.reference_node,
                f"{self.case_name} steering preview",
                role="preview",
                show_3d=show_3d,
            )
        self.outcome = outcome
        self.set_visible(self.visible)
        return self.node

    def set_visible(self, visible: bool) -> None:
        self.visible = bool(visible)
        display = self.node.GetDisplayNode() if self.node is not None else None
        if display is not None:
            display.SetVisibility(self.visible)

    def accept(self, source_node: Any, name: str | None = None, extra: dict[str, Any] | None = None) -> Any:
        """A new segmentation node with the latest outcome and its provenance; nothing existing changes."""
        if self.outcome is None:
            raise ParameterError("nothing to accept yet: steer first and wait for the preview")
        api, outcome = self.scene_api, self.outcome
        node = api.add_brats_segmentation(
            self.scene,
            outcome.labels,
            outcome.grid,
            self.reference_node,
            name or f"{source_node.GetName()} corrected",
            role="correction",
            show_3d=api.has_closed_surface(source_node),
        )
        provenance = api.Provenance.from_json(outcome.provenance)
        provenance.source_segmentation = source_node.GetName()
        provenance.extra.update(
            {
                "dice": outcome.dice,
                "dice_unsteered": outcome.dice_unsteered,
                "changed_voxels": outcome.changed_voxels,
                **outcome.extra,
                **(extra or {}),
            }
        )
        api.attach_provenance(node, provenance)
        return node

    def remove(self) -> None:
        if self.node is not None and self.node.GetScene() is self.scene:
            self.scene_api.remove_node(self.scene, self.node)
        self.node, self.outcome = None, None


def dice_summary(outcome: SteeringOutcome | None) -> str:
    """The Dice readout: each region steered, with the model's own Dice in brackets."""
    if outcome is None:
        return "-"
    if outcome.dice is None:
        return "no reference segmentation"
    before = outcome.dice_unsteered or {}
    return ", ".join(
        f"{name} {outcome.dice[name]:.3f} (model {before.get(name, float('nan')):.3f})"
        for name in ("WT", "TC", "ET", "ED")
        if name in outcome.dice
    )
