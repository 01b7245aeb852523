"""Steered segmentations on disk, each carrying its provenance twice: a JSON sidecar and the file's own metadata.

SEG.nii.gz                    labels in the input's exact geometry; a NIfTI comment extension (or,
                              for .nrrd, a key/value field) "MedSegLens.Provenance" = the record as JSON
SEG.seg.nrrd                  a Slicer segmentation (named, coloured, coded segments) with the same
                              field, written by `MedSegLensLib.segmentation_file`
SEG.provenance.json           the same record, readable without an image library
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data import Case, write_volume
from ..data.volumes import read_volume_metadata, strip_image_suffix
from ..errors import IntegrityError
from ..fileio import check_can_write, sha256_file, write_json_atomic
from ..provenance import Provenance
from ..segmentation_file import PROVENANCE_FIELD, is_segmentation_file, write_segmentation_file
from ..steering_contract import SteeringSpec
from .session import SteeringSession

SIDECAR_SUFFIX = ".provenance.json"


def steering_provenance(session: SteeringSession, spec: SteeringSpec, exact: bool = True) -> Provenance:
    """The record of `spec` applied in `session`: latents, strengths, mode, region, hashes, layer, time, version."""
    region = spec.region.to_json()
    if spec.region.kind == "mask":
        region["sha256"] = sha256_file(spec.region.path)
    extra = {"case_id": session.case.case_id, "exact": bool(exact or spec.region.kind == "none")}
    if spec.mode in ("additive", "clamp") and session.scales is not None:
        extra["typical_activations"] = [float(v) for v in session.scales.of(spec.latents)]
        extra["typical_quantile"] = session.scales.quantile
    return Provenance(
        latents=list(spec.latents),
        strengths=list(spec.strengths),
        mode=spec.mode,
        model_sha256=session.model.fingerprint,
        sae_sha256=session.sae_sha256,
        layer=session.layer,
        region=region,
        extra=extra,
    )


def sidecar_path(segmentation: str | Path) -> Path:
    segmentation = Path(segmentation)
    return segmentation.with_name(strip_image_suffix(segmentation) + SIDECAR_SUFFIX)


def write_steered_segmentation(
    case: Case, labels: np.ndarray, path: str | Path, provenance: Provenance, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write labels (on case.grid) in the input's geometry with the provenance inside and beside the file."""
    path = check_can_write(path, overwrite)
    sidecar = check_can_write(sidecar_path(path), overwrite)
    record = provenance.to_json()
    source_labels = case.to_source(np.asarray(labels, dtype=np.uint8))
    if is_segmentation_file(path):
        write_segmentation_file(source_labels, case.source_grid, path, record, overwrite=True)
    else:
        write_volume(source_labels, case.source_grid, path, metadata={PROVENANCE_FIELD: record})
    write_json_atomic(sidecar, json.loads(record))
    return path, sidecar


def read_segmentation_provenance(path: str | Path) -> Provenance:
    """The provenance stored inside a steered segmentation file."""
    text = read_volume_metadata(path).get(PROVENANCE_FIELD)
    if not text:
        raise IntegrityError(f"{path}: carries no MedSegLens provenance; it was not written by `medseglens steer`")
    return Provenance.from_json(text)


def read_sidecar_provenance(path: str | Path) -> Provenance:
    """The provenance in the JSON sidecar of a steered segmentation (pass the segmentation or the sidecar)."""
    path = Path(path)
    sidecar = path if path.name.endswith(SIDECAR_SUFFIX) else sidecar_path(path)
    try:
        return Provenance.from_json(sidecar.read_text(encoding="utf-8"))
    except OSError as exc:
        raise IntegrityError(f"{sidecar}: provenance sidecar unreadable ({exc.strerror})") from None
