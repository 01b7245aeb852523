"""A scene outside desktop Slicer, set up the way Slicer sets up its own.

Desktop Slicer and trame-slicer's `SlicerApp` already own a configured scene:
pass theirs (`slicer.mrmlScene`, `app.scene`) to the scene functions. Plain
Python (the CLI, the worker, tests) creates one here. What Slicer would have
done at start-up and the scene functions rely on: the default colour nodes
(grey for MRI, the colour maps for overlays), the segmentation converter
rules (closed surfaces), the subject hierarchy, and the slice orientation
presets used when rendering slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import slicer


@dataclass
class HeadlessSlicer:
    """A scene with the logics that keep it working (the scene also holds on to them)."""

    scene: object
    app_logic: object
    segmentations_logic: object


def create_headless_slicer() -> HeadlessSlicer:
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    color_logic = app_logic.GetColorLogic()
    color_logic.SetMRMLScene(scene)
    color_logic.AddDefaultColorNodes()
    segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations_logic.SetMRMLScene(scene)
    segmentations_logic.SetMRMLApplicationLogic(app_logic)
    app_logic.SetModuleLogic("Segmentations", segmentations_logic)
    slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)
    headless = HeadlessSlicer(scene, app_logic, segmentations_logic)
    # The colour logic removes the default colour nodes when it is deleted: let the scene keep its logics alive,
    # so `create_headless_slicer().scene` is safe to use on its own.
    scene.medseglens_logics = headless
    return headless
