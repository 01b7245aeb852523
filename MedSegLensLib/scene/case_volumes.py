"""A `Case` as four scalar volume nodes in the input's exact geometry.

The case holds its images in canonical (closest-RAS) voxel order; the nodes
get them back in the input's own voxel order with the input's affine as
IJK-to-RAS, so Slicer shows them exactly where the input files are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.case import MODALITIES, Case
from .hierarchy import DEFAULT_STUDY, case_study_item, place_under
from .volume_arrays import add_volume_node

CASE_ATTRIBUTE = "MedSegLens.CaseId"
MODALITY_ATTRIBUTE = "MedSegLens.Modality"
ROLE_ATTRIBUTE = "MedSegLens.Role"


@dataclass
class CaseNodes:
    """The volume nodes of one case and the study item they sit under."""

    case_id: str
    volumes: dict[str, object]
    study_item: int

    @property
    def reference(self):
        """The node whose geometry every output of this case shares (the first modality)."""
        return self.volumes[MODALITIES[0]]


def display_range(array: np.ndarray) -> tuple[float, float]:
    """Window limits for MRI: 0.5th-99.5th percentile of the non-zero voxels (the brain)."""
    values = array[array != 0]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(max(high, low + 1e-6))


def add_case_volumes(scene, case: Case, study_name: str = DEFAULT_STUDY) -> CaseNodes:
    """Add the case's four modalities as volume nodes under patient `case_id` / study `study_name`."""
    study = case_study_item(scene, case.case_id, study_name)
    volumes = {}
    for channel, modality in enumerate(MODALITIES):
        array = case.to_source(case.image[channel])
        node = add_volume_node(scene, array, case.source_grid, f"{case.case_id}-{modality}")
        node.SetAttribute(CASE_ATTRIBUTE, case.case_id)
        node.SetAttribute(MODALITY_ATTRIBUTE, modality)
        node.SetAttribute(ROLE_ATTRIBUTE, "input")
        low, high = display_range(array)
        display = node.GetDisplayNode()
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(low, high)
        place_under(scene, node, study)
        volumes[modality] = node
    return CaseNodes(case.case_id, volumes, study)
