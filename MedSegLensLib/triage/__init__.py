"""Reading-room triage: which segmentations to distrust, ranked by an SAE failure risk beside label-free baselines.

    result = triage(model, sae, cases, calibration=calibration_cases)
    rows = worklist_rows(result.records, result.reference, descriptions)
    write_worklist("out/triage", rows, header, result.reference)

measure.py: one pass per case (SAE quantities, softmax and TTA baselines, failure label if known);
reference.py: calibration statistics and the risk's weights; stats.py: AUROC/AUPRC with bootstrap
intervals; evaluation.py: the held-out table; worklist.py: CSV, JSON and HTML; run.py: the whole flow.
"""

from .evaluation import evaluate_scores, markdown_table
from .measure import MeasureSettings, measure_case
from .reference import SCORES, Reference, ReferenceSettings, check_disjoint, fit_reference
from .run import TriageResult, measure_cases, triage
from .worklist import worklist_rows, write_worklist

__all__ = [
    "MeasureSettings",
    "Reference",
    "ReferenceSettings",
    "SCORES",
    "TriageResult",
    "check_disjoint",
    "evaluate_scores",
    "fit_reference",
    "markdown_table",
    "measure_case",
    "measure_cases",
    "triage",
    "worklist_rows",
    "write_worklist",
]
