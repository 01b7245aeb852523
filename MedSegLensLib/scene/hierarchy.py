"""Placing nodes under their case (patient / study) in the subject hierarchy, and removing them cleanly.

Desktop Slicer gives every data node a subject-hierarchy item as it is added;
plain slicer-core does not, so each function here creates the item when it is
missing. Patient and study items are found by name, so everything MedSegLens
adds for one case gathers under one study.
"""

from __future__ import annotations

import slicer
from vtkmodules.vtkCommonCore import vtkIdList

DEFAULT_STUDY = "MedSegLens"


def _hierarchy(scene):
    return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)


def _child_named(sh, parent: int, name: str, level: str) -> int:
    children = vtkIdList()
    sh.GetItemChildren(parent, children)
    for index in range(children.GetNumberOfIds()):
        item = children.GetId(index)
        if sh.GetItemName(item) == name and sh.GetItemLevel(item) == level:
            return item
    return 0


def case_study_item(scene, case_id: str, study_name: str = DEFAULT_STUDY) -> int:
    """The study item of `case_id` (created with its patient item when missing)."""
    sh = _hierarchy(scene)
    patient = _child_named(sh, sh.GetSceneItemID(), case_id, "Patient")
    if not patient:
        patient = sh.CreateSubjectItem(sh.GetSceneItemID(), case_id)
    study = _child_named(sh, patient, study_name, "Study")
    if not study:
        study = sh.CreateStudyItem(patient, study_name)
    return study


def place_under(scene, node, parent_item: int) -> int:
    """Put `node` under `parent_item`; returns the node's item."""
    sh = _hierarchy(scene)
    item = sh.GetItemByDataNode(node)
    if item:
        sh.SetItemParent(item, parent_item)
    else:
        item = sh.CreateItem(parent_item, node)
    return item


def place_beside(scene, node, sibling) -> int:
    """Put `node` under the same parent as `sibling` (its case's study, usually)."""
    sh = _hierarchy(scene)
    sibling_item = sh.GetItemByDataNode(sibling)
    parent = sh.GetItemParent(sibling_item) if sibling_item else sh.GetSceneItemID()
    return place_under(scene, node, parent)


def parent_item_of(scene, node) -> int:
    """The subject-hierarchy parent of `node` (0 when the node has no item)."""
    sh = _hierarchy(scene)
    item = sh.GetItemByDataNode(node)
    return sh.GetItemParent(item) if item else 0


def remove_node(scene, node) -> None:
    """Remove a data node with its subject-hierarchy item, display and storage nodes.

    Plain slicer-core leaves all three behind on `scene.RemoveNode` (the item
    then points at nothing); desktop Slicer tidies up the same way.
    """
    sh = _hierarchy(scene)
    item = sh.GetItemByDataNode(node)
    dependents = []
    for count, nth in (
        ("GetNumberOfDisplayNodes", "GetNthDisplayNode"),
        ("GetNumberOfStorageNodes", "GetNthStorageNode"),
    ):
        if hasattr(node, count):
            dependents += [getattr(node, nth)(index) for index in range(getattr(node, count)())]
    if item:
        sh.RemoveItem(item, False, False)
    for dependent in dependents:
        if dependent is not None:
            scene.RemoveNode(dependent)
    scene.RemoveNode(node)
