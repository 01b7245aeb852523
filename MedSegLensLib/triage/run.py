"""Triage of cohorts end to end: check the inputs, measure every case, fit or reuse the reference, rank.

    worklist = triage(model, sae, cases, calibration=calibration_cases)       # or reference=Reference...

Inputs are checked before any network runs: every case must have the model's
modalities, and cases used for calibration are never ranked (their scores
would be fitted, not predicted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..data import CaseFiles
from ..errors import InputError
from ..models.inference import SegmentationModel
from ..sae import SparseAutoencoder
from .measure import MeasureSettings, check_modalities, measure_case
from .reference import Reference, ReferenceSettings, check_disjoint, fit_reference

Progress = Callable[[str, int, int], None]
MEASURE, REFERENCE = MeasureSettings(), ReferenceSettings()


@dataclass
class TriageResult:
    records: list[dict]
    reference: Reference


def measure_cases(
    model: SegmentationModel,
    sae: SparseAutoencoder,
    cases: list[CaseFiles],
    settings: MeasureSettings,
    stage: str = "measure",
    progress: Progress | None = None,
) -> list[dict]:
    records = []
    for number, files in enumerate(cases):
        records.append(measure_case(model, sae, files, settings))
        if progress:
            progress(stage, number + 1, len(cases))
    return records


def triage(
    model: SegmentationModel,
    sae: SparseAutoencoder,
    cases: list[CaseFiles],
    calibration: list[CaseFiles] | None = None,
    reference: Reference | None = None,
    measure: MeasureSettings = MEASURE,
    settings: ReferenceSettings = REFERENCE,
    progress: Progress | None = None,
) -> TriageResult:
    """Records of `cases` and the reference they are scored with (fit on `calibration`, or given)."""
    if (calibration is None) == (reference is None):
        raise InputError("give either calibration cases (labelled) or a reference fit earlier, not both or neither")
    check_modalities(model, cases + (calibration or []))
    ids = [c.case_id for c in cases]
    if calibration is not None:
        check_disjoint([c.case_id for c in calibration], ids)
        unlabelled = [c.case_id for c in calibration if not c.seg]
        if unlabelled:
            raise InputError(f"calibration case {unlabelled[0]} has no segmentation; calibration needs labelled cases")
        reference = fit_reference(measure_cases(model, sae, calibration, measure, "calibrate", progress), settings)
    else:
        check_disjoint(reference.calibration_ids, ids)
    return TriageResult(measure_cases(model, sae, cases, measure, "triage", progress), reference)
