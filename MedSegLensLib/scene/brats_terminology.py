"""The BraTS tumour regions as Slicer segments: names, colours and standard terminology.

One definition feeds the named colour table (used for labelmap import and
export), each segment's terminology tag, and the colour table file shipped in
`Resources/ColorTables/`. Codes come from the DICOM lesion segmentation types
(CID 7159) under the category "Morphologically Altered Structure"; all three
are in Slicer's "DICOM master list" terminology context. See docs/scene.md for
why enhancing tumour is coded as "Neoplasm, Primary".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import slicer

from ..data.case import LABEL_NAMES
from ..fileio import atomic_path
from ..errors import OutputError


@dataclass(frozen=True)
class Code:
    """A coded concept (coding scheme, code value, code meaning)."""

    scheme: str
    value: str
    meaning: str

    def text(self) -> str:
        return f"{self.scheme}^{self.value}^{self.meaning}"


@dataclass(frozen=True)
class TumourRegion:
    """One BraTS label value as a segment."""

    value: int
    description: str
    color: tuple[int, int, int]
    type: Code

    @property
    def name(self) -> str:
        return LABEL_NAMES[self.value]

    @property
    def color_float(self) -> tuple[float, float, float]:
        return tuple(c / 255.0 for c in self.color)


TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
CATEGORY = Code("SCT", "49755003", "Morphologically Altered Structure")
BRATS_REGIONS: tuple[TumourRegion, ...] = (
    TumourRegion(1, "necrotic tumour core", (220, 50, 47), Code("SCT", "6574001", "Necrosis")),
    TumourRegion(2, "peritumoral edema", (60, 180, 75), Code("SCT", "79654002", "Edema")),
    TumourRegion(3, "enhancing tumour", (255, 225, 25), Code("SCT", "86049000", "Neoplasm, Primary")),
)
COLOR_TABLE_NAME = "MedSegLens BraTS"
COLOR_TABLE_FILE = "MedSegLens-BraTS.csv"
_ROLE_ATTRIBUTE = "MedSegLens.ColorTable"


def terminology_entry(region: TumourRegion) -> str:
    """Slicer's terminology entry string: context~category~type~modifier~anatomic context~region~modifier."""
    return "~".join([TERMINOLOGY_CONTEXT, CATEGORY.text(), region.type.text(), "^^", "", "^^", "^^"])


def region_of_value(value: int) -> TumourRegion:
    return next(r for r in BRATS_REGIONS if r.value == value)


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
        table.SetTerminology(region.value, CATEGORY.scheme, CATEGORY.value, CATEGORY.meaning,
                             region.type.scheme, region.type.value, region.type.meaning)


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
