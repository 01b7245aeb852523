"""Reading-room triage: which segmentations to distrust, ranked by an SAE failure risk beside label-free baselines.

    result = triage(model, sae, cases, calibration=calibration_cases)
    rows = worklist_rows(result.records, result.reference, descriptions)
    write_worklist("out/triage", rows, header, result.reference)

measure.py: one pass per case (SAE quantities, softmax and TTA baselines, failure label if known);
reference.py: calibration statistics and the risk's weights; stats.py: AUROC/AUPRC with bootstrap
intervals; evaluation.py: the held-out table; worklist.py: CSV, JSON and HTML; run.py: the whole flow.
"""

from __future__ import annotations

import importlib

# Loaded on first use (PEP 562): `triage.read`, the worklist reader of the viewer and the Slicer module,
# must import without torch, monai or scikit-learn.
_EXPORTS = {
    "evaluate_scores": "evaluation",
    "markdown_table": "evaluation",
    "MeasureSettings": "measure",
    "measure_case": "measure",
    "SCORES": "reference",
    "Reference": "reference",
    "ReferenceSettings": "reference",
    "check_disjoint": "reference",
    "fit_reference": "reference",
    "TriageResult": "run",
    "measure_cases": "run",
    "triage": "run",
    "worklist_rows": "worklist",
    "write_worklist": "worklist",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
