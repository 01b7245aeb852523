"""Provenance of a steered segmentation, kept on the node as a JSON attribute.

Node attributes are saved in the .mrml file, so the record travels with the
scene (.mrml folder or .mrb bundle) and can be read back by desktop Slicer,
the browser viewer or plain Python without MedSegLens-specific files.
"""

from __future__ import annotations

from ..provenance import MODES, Provenance

__all__ = ["MODES", "PROVENANCE_ATTRIBUTE", "Provenance", "attach_provenance", "read_provenance"]

PROVENANCE_ATTRIBUTE = "MedSegLens.Provenance"


def attach_provenance(node, provenance: Provenance) -> None:
    """Record `provenance` on `node` (any MRML node; saved with the scene)."""
    node.SetAttribute(PROVENANCE_ATTRIBUTE, provenance.to_json())


def read_provenance(node) -> Provenance | None:
    """The provenance recorded on `node`, or None when it has none."""
    text = node.GetAttribute(PROVENANCE_ATTRIBUTE)
    return Provenance.from_json(text) if text else None
