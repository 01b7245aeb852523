"""Writing nodes to files with Slicer's own storage nodes (what Slicer's Save dialog does).

slicer-core has no `slicer.util.saveNode`, so these functions drive storage
nodes directly and work the same in desktop Slicer. Outputs are written to a
temporary sibling and renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import slicer
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from ..data.geometry import Grid
from ..data.volumes import NIFTI_SUFFIXES, image_suffix
from ..errors import InputError, OutputError, ParameterError
from ..fileio import atomic_path, check_can_write
from ..segmentation_file import SEGMENTATION_SUFFIX, is_segmentation_file, write_segmentation_file
from .provenance import read_provenance
from .scratch import scratch_nodes
from .segmentation import segmentation_to_labels
from .volume_arrays import add_volume_node, affine_from_matrix, node_grid

LABELMAP_SUFFIXES = NIFTI_SUFFIXES + (".nrrd",)


def _message_text(messages) -> str:
    text = " ".join((messages.GetAllMessagesAsString() or "").split()) if messages is not None else ""
    return text[:200] or "no reason given"


def _write(storage, node, path: Path, suffix: str) -> Path:
    with atomic_path(path, suffix=suffix) as tmp:
        storage.SetFileName(str(tmp))
        if not storage.WriteData(node):
            raise OutputError(
                f"{path}: Slicer could not write '{node.GetName()}' ({_message_text(storage.GetUserMessages())})"
            )
    return path


def save_volume(volume_node, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a scalar or labelmap volume node as NIfTI (.nii.gz, .nii) or NRRD, geometry included."""
    path = check_can_write(path, overwrite)
    suffix = image_suffix(path)
    if suffix not in LABELMAP_SUFFIXES:
        raise ParameterError(f"{path}: volumes are written as .nii.gz, .nii or .nrrd")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetUseCompression(1)
    return _write(storage, volume_node, path, suffix)


def reference_geometry(segmentation_node) -> Grid:
    """The grid a segmentation node was made on (its reference image geometry)."""
    segmentation = segmentation_node.GetSegmentation()
    text = segmentation.GetConversionParameter(slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    image = slicer.vtkOrientedImageData()
    if not text or not slicer.vtkSegmentationConverter.DeserializeImageGeometry(text, image):
        raise ParameterError(
            f"'{segmentation_node.GetName()}' has no reference geometry; export it with the input volume as reference"
        )
    matrix = vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    extent = image.GetExtent()
    offset = np.eye(4)
    offset[:3, 3] = extent[0::2]
    shape = tuple(int(extent[2 * i + 1] - extent[2 * i] + 1) for i in range(3))
    return Grid(shape, affine_from_matrix(matrix) @ offset)


def save_segmentation(segmentation_node, path: str | os.PathLike, reference_node=None, overwrite: bool = False) -> Path:
    """Write a segmentation as .seg.nrrd (segments with names, colours, terminology, provenance) or as a labelmap.

    Both hold the BraTS labels on the grid of `reference_node` (the input volume; for .seg.nrrd the node's
    own reference geometry when not given), so they overlay the input file exactly. A labelmap (.nii.gz,
    .nii, .nrrd) holds 0 / 1 NCR / 2 ED / 3 ET; a .seg.nrrd goes through the project's one segmentation writer.
    """
    path = check_can_write(path, overwrite)
    if is_segmentation_file(path):
        grid = node_grid(reference_node) if reference_node is not None else reference_geometry(segmentation_node)
        provenance = read_provenance(segmentation_node)
        return write_segmentation_file(
            segmentation_to_labels(segmentation_node, grid),
            grid,
            path,
            provenance.to_json() if provenance is not None else None,
            overwrite=True,
        )
    if image_suffix(path) not in LABELMAP_SUFFIXES:
        raise ParameterError(f"{path}: segmentations are written as .seg.nrrd, .nii.gz, .nii or .nrrd")
    if reference_node is None:
        raise ParameterError(f"{path}: a labelmap export needs the input volume node to take its geometry from")
    scene = segmentation_node.GetScene()
    grid = node_grid(reference_node)
    labels = segmentation_to_labels(segmentation_node, grid)
    with scratch_nodes(scene):
        labelmap = add_volume_node(
            scene, labels, grid, f"{segmentation_node.GetName()} labels", "vtkMRMLLabelMapVolumeNode"
        )
        return save_volume(labelmap, path, overwrite=True)


def load_segmentation(scene, path: str | os.PathLike, name: str | None = None):
    """Read a .seg.nrrd file into a new segmentation node."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if not is_segmentation_file(path):
        raise InputError(f"{path}: not a Slicer segmentation file (.seg.nrrd)")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or path.name[: -len(SEGMENTATION_SUFFIX)])
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise InputError(f"{path}: not a readable segmentation ({_message_text(storage.GetUserMessages())})")
    node.CreateDefaultDisplayNodes()
    return node
