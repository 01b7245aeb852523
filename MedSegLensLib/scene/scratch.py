"""Scratch nodes: helpers that Slicer's logic needs inside the scene for a moment.

Exporting a segmentation to a labelmap, importing a labelmap and rendering a
slice all need nodes in the scene, and Slicer adds display and colour nodes of
its own as a side effect. `scratch_nodes` removes every node added inside the
block except the ones the caller keeps and whatever those refer to (display
node, colour table), so a user's scene is left as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


def _node_ids(scene) -> set[str]:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def _referenced_ids(node) -> set[str]:
    ids = set()
    for role_index in range(node.GetNumberOfNodeReferenceRoles()):
        role = node.GetNthNodeReferenceRole(role_index)
        for index in range(node.GetNumberOfNodeReferences(role)):
            ref = node.GetNthNodeReferenceID(role, index)
            if ref:
                ids.add(ref)
    return ids


def _closure(scene, roots: set[str]) -> set[str]:
    """`roots` and every node they refer to, directly or not."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        node_id = todo.pop()
        node = scene.GetNodeByID(node_id)
        if node_id in seen or node is None:
            continue
        seen.add(node_id)
        todo.extend(_referenced_ids(node))
    return seen


@contextlib.contextmanager
def scratch_nodes(scene) -> Iterator[Callable[[object], object]]:
    """Yield `keep(node)`; on exit remove the nodes added in the block that nothing kept refers to."""
    before = _node_ids(scene)
    kept: set[str] = set()

    def keep(node):
        kept.add(node.GetID())
        return node

    try:
        yield keep
    finally:
        survivors = _closure(scene, kept)
        for node_id in sorted(_node_ids(scene) - before - survivors):
            node = scene.GetNodeByID(node_id)
            if node is not None and node.GetClassName() != "vtkMRMLSubjectHierarchyNode":
                scene.RemoveNode(node)
