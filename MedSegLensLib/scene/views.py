"""Pointing the scene's slice views at the MRI and an overlay (desktop Slicer and trame-slicer).

Slice views read their layers from the scene's slice composite nodes, so this
needs no Qt: desktop Slicer and trame-slicer redraw when the nodes change.
"""

from __future__ import annotations


def show_in_slice_views(
    scene, background=None, foreground=None, label=None, foreground_opacity: float | None = None
) -> int:
    """Set the layers of every slice view (None leaves a layer as it is); returns the number of views."""
    count = scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")
    for index in range(count):
        composite = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        was_modifying = composite.StartModify()
        if background is not None:
            composite.SetBackgroundVolumeID(background.GetID())
        if foreground is not None:
            composite.SetForegroundVolumeID(foreground.GetID())
        if label is not None:
            composite.SetLabelVolumeID(label.GetID())
        if foreground_opacity is not None:
            composite.SetForegroundOpacity(float(foreground_opacity))
        composite.EndModify(was_modifying)
    return count
