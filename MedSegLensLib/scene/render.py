"""Slice views rendered headless by Slicer's own slice logic, without OpenGL.

`vtkMRMLSliceLogic` reslices and blends the layers exactly as a Slicer slice
view does: background (the MRI), foreground (a latent overlay, with its colour
map, threshold and opacity) and the label layer. A segmentation is drawn in
the label layer as a labelmap exported with its segments' colours (desktop
Slicer draws segmentations with OpenGL instead; colours and geometry agree).
The slice node and every helper node are removed afterwards, so rendering
inside a user's scene leaves it unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import slicer
from vtkmodules.util import numpy_support

from ..errors import ParameterError
from ..fileio import atomic_path, check_can_write
from .scratch import scratch_nodes
from .volume_arrays import affine_from_matrix

ORIENTATIONS = {"axial": "Axial", "coronal": "Coronal", "sagittal": "Sagittal"}
_VIEW_NAME = "MedSegLensOffscreen"


@dataclass
class SliceImage:
    """An RGB slice image, rows top to bottom as in the PNG, and where its pixels lie in RAS."""

    rgb: np.ndarray
    xy_to_ras: np.ndarray
    orientation: str

    def ras_to_pixel(self, ras) -> tuple[int, int]:
        """(row, column) of the pixel showing RAS point `ras` (projected onto the slice)."""
        xy = np.linalg.inv(self.xy_to_ras) @ np.append(np.asarray(ras, dtype=float), 1.0)
        column, y = int(round(xy[0])), int(round(xy[1]))
        return self.rgb.shape[0] - 1 - y, column

    def pixel_to_ras(self, row: int, column: int) -> np.ndarray:
        y = self.rgb.shape[0] - 1 - row
        return (self.xy_to_ras @ np.array([column, y, 0.0, 1.0]))[:3]


def _segmentation_labelmap(scene, segmentation_node, background):
    """The visible segments as a labelmap on the background's grid, coloured like the segments."""
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "MedSegLens render labels")
    if not slicer.vtkSlicerSegmentationsModuleLogic.ExportVisibleSegmentsToLabelmapNode(
        segmentation_node, labelmap, background
    ):
        raise RuntimeError(f"Slicer could not draw segmentation '{segmentation_node.GetName()}'")
    return labelmap


def render_slice(
    scene,
    background,
    foreground=None,
    segmentation=None,
    orientation: str = "axial",
    position=None,
    size: tuple[int, int] = (512, 512),
    foreground_opacity: float = 0.6,
    segmentation_opacity: float = 0.5,
    outline: bool = False,
    path: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> SliceImage:
    """Render one slice view: `background` volume, optional `foreground` overlay and `segmentation`.

    `position` is a RAS point (mm) the slice passes through; None keeps the
    background's centre. The view is fitted to the background. With `path`
    the image is also written as PNG.
    """
    if orientation not in ORIENTATIONS:
        raise ParameterError(f"orientation '{orientation}' is not one of {', '.join(ORIENTATIONS)}")
    if path is not None:
        check_can_write(path, overwrite)
    width, height = (int(s) for s in size)
    preset = ORIENTATIONS[orientation]
    with scratch_nodes(scene):
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLScene(scene)
        try:
            slice_node = logic.AddSliceNode(_VIEW_NAME)
            if not slice_node.SetOrientation(preset):
                raise RuntimeError(f"the scene has no '{preset}' slice orientation preset (see scene.headless)")
            composite = logic.GetSliceCompositeNode()
            composite.SetBackgroundVolumeID(background.GetID())
            composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
            composite.SetForegroundOpacity(float(foreground_opacity))
            if segmentation is not None:
                composite.SetLabelVolumeID(_segmentation_labelmap(scene, segmentation, background).GetID())
                composite.SetLabelOpacity(float(segmentation_opacity))
            slice_node.SetUseLabelOutline(bool(outline))
            slice_node.SetDimensions(width, height, 1)
            logic.FitSliceToAll(width, height)
            if position is not None:
                slice_node.JumpSliceByOffsetting(*(float(v) for v in position))
            image = _blend(logic)
            xy_to_ras = affine_from_matrix(slice_node.GetXYToRAS())
        finally:
            logic.SetMRMLScene(None)
    result = SliceImage(image, xy_to_ras, orientation)
    if path is not None:
        write_png(result.rgb, path, overwrite=True)
    return result


def _blend(logic) -> np.ndarray:
    producer = logic.GetImageDataConnection().GetProducer()
    producer.Update()
    output = producer.GetOutputDataObject(0)
    width, height, _ = output.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(output.GetPointData().GetScalars()).reshape(height, width, -1)
    return np.ascontiguousarray(pixels[::-1, :, :3])


def render_orthogonal(
    scene,
    background,
    foreground=None,
    segmentation=None,
    position=None,
    size: int = 384,
    path: str | os.PathLike | None = None,
    overwrite: bool = False,
    **options,
) -> np.ndarray:
    """Axial, coronal and sagittal views side by side (the README screenshot); returns the RGB image."""
    if path is not None:
        check_can_write(path, overwrite)
    panels = [
        render_slice(scene, background, foreground, segmentation, orientation, position, (size, size), **options).rgb
        for orientation in ORIENTATIONS
    ]
    gap = np.zeros((size, 4, 3), np.uint8)
    strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    if path is not None:
        write_png(strip, path, overwrite=True)
    return strip


def legend_strip(scene, colormap_id: str, text: str, width: int, height: int = 28) -> np.ndarray:
    """A legend row to put under rendered views: the overlay's colour bar (from the scene's own colour table,
    lowest colour left) and `text` (the range in activation units) on black, `height` pixels high."""
    import PIL.Image  # imported as modules: Testing/slicer_api_names.py reads CamelCase names from them as PIL's
    import PIL.ImageDraw
    import PIL.ImageFont

    table = scene.GetNodeByID(colormap_id)
    if table is None:
        raise ParameterError(f"colour map '{colormap_id}' is not in the scene")
    bar_width = min(max(width // 5, 32), width)
    lookup = table.GetLookupTable()
    low, high = lookup.GetRange()
    colours = np.zeros((bar_width, 3))
    for i, colour in enumerate(colours):
        lookup.GetColor(low + (high - low) * i / max(bar_width - 1, 1), colour)
    strip = np.zeros((height, width, 3), np.uint8)
    margin = max(height // 5, 2)
    strip[margin : height - margin, :bar_width] = np.round(colours * 255).astype(np.uint8)
    image = PIL.Image.fromarray(strip)
    from matplotlib import font_manager  # DejaVu Sans ships with matplotlib and has the legend's "–" and "·"

    font = PIL.ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size=max(height - 2 * margin - 4, 8))
    PIL.ImageDraw.Draw(image).text(
        (bar_width + 2 * margin, height // 2), text, fill=(255, 255, 255), font=font, anchor="lm"
    )
    return np.asarray(image)


def write_png(
    rgb: np.ndarray, path: str | os.PathLike, overwrite: bool = False, text: dict[str, str] | None = None
) -> Path:
    """Write an RGB array (rows top to bottom) as PNG; `text`: UTF-8 text chunks (key: value), e.g. a legend."""
    import PIL.Image
    import PIL.PngImagePlugin

    path = check_can_write(path, overwrite)
    info = PIL.PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    image = PIL.Image.fromarray(np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)), "RGB")
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    return path
