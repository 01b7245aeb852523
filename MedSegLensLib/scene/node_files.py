"""Writing nodes to files with Slicer's own storage nodes (what Slicer's Save dialog does).

slicer-core has no `slicer.util.saveNode`, so these functions drive storage
nodes directly and work the same in desktop Slicer. Outputs are written to a
temporary sibling and renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path

import slicer

from ..data.volumes import NIFTI_SUFFIXES, image_suffix
from ..errors import InputError, OutputError, ParameterError
from ..fileio import atomic_path, check_can_write
from .scratch import scratch_nodes
from .segmentation import segmentation_to_labels
from .volume_arrays import add_volume_node, node_grid

SEGMENTATION_SUFFIX = ".seg.nrrd"
LABELMAP_SUFFIXES = NIFTI_SUFFIXES + (".nrrd",)


def _message_text(messages) -> str:
    text = " ".join((messages.GetAllMessagesAsString() or "").split()) if messages is not None else ""
    return text[:200] or "no reason given"


def _write(storage, node, path: Path, suffix: str) -> Path:
    with atomic_path(path, suffix=suffix) as tmp:
        storage.SetFileName(str(tmp))
        if not storage.WriteData(node):
            raise OutputError(f"{path}: Slicer could not write '{node.GetName()}' ({_message_text(storage.GetUserMessages())})")
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


def save_segmentation(segmentation_node, path: str | os.PathLike, reference_node=None, overwrite: bool = False) -> Path:
    """Write a segmentation as .seg.nrrd (segments with names, colours, terminology) or as a BraTS labelmap.

    A labelmap (.nii.gz, .nii, .nrrd) holds 0 / 1 NCR / 2 ED / 3 ET on the grid
    of `reference_node` (the input volume), so it overlays the input file exactly.
    """
    path = check_can_write(path, overwrite)
    if path.name.lower().endswith(SEGMENTATION_SUFFIX):
        storage = slicer.vtkMRMLSegmentationStorageNode()
        return _write(storage, segmentation_node, path, SEGMENTATION_SUFFIX)
    if image_suffix(path) not in LABELMAP_SUFFIXES:
        raise ParameterError(f"{path}: segmentations are written as .seg.nrrd, .nii.gz, .nii or .nrrd")
    if reference_node is None:
        raise ParameterError(f"{path}: a labelmap export needs the input volume node to take its geometry from")
    scene = segmentation_node.GetScene()
    grid = node_grid(reference_node)
    labels = segmentation_to_labels(segmentation_node, grid)
    with scratch_nodes(scene):
        labelmap = add_volume_node(scene, labels, grid, f"{segmentation_node.GetName()} labels", "vtkMRMLLabelMapVolumeNode")
        return save_volume(labelmap, path, overwrite=True)


def load_segmentation(scene, path: str | os.PathLike, name: str | None = None):
    """Read a .seg.nrrd file into a new segmentation node."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if not path.name.lower().endswith(SEGMENTATION_SUFFIX):
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
