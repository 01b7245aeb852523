"""The BraTS tumour regions in the scene: the named colour table and finding a segment's region.

The regions themselves (names, colours, SCT codes) are defined once in
`MedSegLensLib.segmentation_file`; here they feed the named colour table (used
for labelmap import and export, and the colour table file shipped in
`Resources/ColorTables/`) and segments are matched back to regions.
"""

from __future__ import annotations

import os
from pathlib import Path

import slicer

from ..errors import OutputError
from ..fileio import atomic_path
from ..segmentation_file import (  # noqa: F401 - the scene's names for the BraTS segments
    BRATS_REGIONS,
    CATEGORY,
    TERMINOLOGY_CONTEXT,
    Code,
    TumourRegion,
    region_of_value,
    terminology_entry,
)

COLOR_TABLE_NAME = "MedSegLens BraTS"
COLOR_TABLE_FILE = "MedSegLens-BraTS.csv"
_ROLE_ATTRIBUTE = "MedSegLens.ColorTable"


def region_of_segment(segment) -> TumourRegion | None:
    """The tumour region a segment stands for: by its terminology type code, else by its name."""
    fields = (segment.GetTerminology() or "").split("~")
    if len(fields) > 2:
        parts = fields[2].split("^")
        for region in BRATS_REGIONS:
            if parts[:2] == [region.type.scheme, region.type.value]:
                return region
    name = (segment.GetName() or "").strip().lower()
    for region in BRATS_REGIONS:
        if name in (region.name.lower(), region.description.lower(), region.type.meaning.lower()):
            return region
    return None


def _fill_color_table(table) -> None:
    table.SetTypeToUser()
    table.SetNumberOfColors(1 + max(r.value for r in BRATS_REGIONS))
    table.SetColor(0, "Background", 0.0, 0.0, 0.0, 0.0)
    for region in BRATS_REGIONS:
        table.SetColor(region.value, region.name, *region.color_float, 1.0)
        table.SetTerminology(
            region.value,
            CATEGORY.scheme,
            CATEGORY.value,
            CATEGORY.meaning,
            region.type.scheme,
            region.type.value,
            region.type.meaning,
        )


def brats_color_table(scene):
    """The scene's BraTS colour table node, added on first use (a user's colour edits are kept)."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLColorTableNode")
        if node.GetAttribute(_ROLE_ATTRIBUTE) == "BraTS":
            return node
    table = slicer.vtkMRMLColorTableNode()
    table.SetName(COLOR_TABLE_NAME)
    table.SetAttribute(_ROLE_ATTRIBUTE, "BraTS")
    _fill_color_table(table)
    scene.AddNode(table)
    return table


def write_brats_color_table(path: str | os.PathLike) -> Path:
    """Write the BraTS colour table as a Slicer colour-table CSV (names, colours, terminology)."""
    path = Path(path)
    table = slicer.vtkMRMLColorTableNode()
    table.SetName(COLOR_TABLE_NAME)
    _fill_color_table(table)
    storage = slicer.vtkMRMLColorTableStorageNode()
    with atomic_path(path, suffix=".csv") as tmp:
        storage.SetFileName(str(tmp))
        if not storage.WriteData(table):
            raise OutputError(f"{path}: Slicer could not write the colour table; choose another location")
    return path
