"""The `steer` job: a steering spec -> the steered segmentation, its provenance and Dice against a reference.

params: model, sae, case (as for `encode`), spec {latents, strengths, mode, region {kind: none |
        tumour-margin (margin_mm) | mask (path: a label file in any geometry overlapping the case)}},
        reference? (a BraTS label file, any geometry overlapping the case), exact? (default true)
result: segmentation (labels file in the input's geometry), label_voxels, changed_voxels (against the
        unsteered model output), dice and dice_unsteered ({WT, TC, ET, NCR, ED} against the reference, or
        null), provenance (the record as JSON: latents, strengths, mode, region, model and SAE hashes,
        layer, time, version), spec, windows_recomputed, windows_total, seconds, preview (true when
        `exact: false` froze instance-norm statistics: an approximate preview; the exact job should follow)

The steering session (everything before the hooked layer, per sliding window)
stays cached for the model, SAE and case, so moving a strength slider re-runs
only the rest of the network; the latents' codes are cached per latent set too,
and so are the reference (read and reoriented once) and the unsteered output's
Dice against it, so an update scores only the steered labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .analysis_inputs import analysis_inputs
from .latent_jobs import label_voxels
from .registry import JobContext, JobRegistry, folder_fingerprint
from .segment_job import require

MIN_REFERENCE_OVERLAP = 0.5
STEERED_FILE = "steered.nii"  # uncompressed: written and read in milliseconds, deleted once shown


def reference_labels(path: str, case: Any) -> np.ndarray:
    """A BraTS label file on `case.grid` (reoriented exactly; resampled by nearest neighbour if needed)."""
    from ..data import LABEL_VALUES, read_label_volume
    from ..data.geometry import overlap_fraction, resample_to_grid, to_canonical

    volume = read_label_volume(path, LABEL_VALUES, kind="label", hint="pass a BraTS segmentation (1 NCR, 2 ED, 3 ET)")
    array, grid = to_canonical(volume.array, volume.grid)
    if grid.same_as(case.grid):
        return array
    if overlap_fraction(grid, case.grid) < MIN_REFERENCE_OVERLAP:
        raise InputError(f"{path}: the reference does not cover the case; pass a segmentation of this case")
    return resample_to_grid(array, grid, case.grid, order=0).astype(np.uint8)


def region_dice(labels: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    from ..metrics import brats_scores

    scores = brats_scores(labels, reference, with_hd95=False)
    return {name.removeprefix("dice_"): round(value, 6) for name, value in scores.items()}


def _reference_and_dice(path: str, case: Any, unsteered: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """The reference on the case grid and the unsteered output's Dice against it: the same for every steer."""
    reference = reference_labels(path, case)
    return reference, region_dice(unsteered, reference)


def steer(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    from ..steering import SteeringSpec, open_session, steering_provenance

    spec = SteeringSpec.from_json(require(params, "spec"))
    if spec.region.kind == "mask" and not Path(spec.region.path).is_file():
        raise InputError(f"{spec.region.path}: the region mask file does not exist; pick a mask again")
    exact = bool(params.get("exact", True))
    inputs = analysis_inputs(params, ctx, 0.0, 0.2)
    spec.check_latents(inputs.sae.n_latents)
    ctx.progress(0.25, "preparing the steering session")
    session = ctx.cache.get_or_create(
        "steering", inputs.key, lambda: open_session(inputs.model, inputs.sae_dir, inputs.case)
    )
    ctx.progress(0.45, "preparing the region")
    session.gates(spec.region)  # the region's mask, made once per region: not part of the update's own `seconds`
    ctx.progress(0.5, "steering")
    result = session.steer(spec, exact=exact)
    labels = np.asarray(result.prediction.labels, dtype=np.uint8)
    unsteered = np.asarray(session.unsteered().labels, dtype=np.uint8)
    dice = dice_unsteered = None
    if params.get("reference"):
        ctx.progress(0.8, "scoring against the reference")
        reference_path = str(params["reference"])
        reference, dice_unsteered = ctx.cache.get_or_create(
            "reference",
            (inputs.key, folder_fingerprint(reference_path)),
            lambda: _reference_and_dice(reference_path, inputs.case, unsteered),
        )
        dice = region_dice(labels, reference)
    ctx.progress(0.9, "writing the steered segmentation")
    path = inputs.case.write_like_input(labels, ctx.output_path(STEERED_FILE), dtype=np.uint8)
    ctx.progress(1.0, "done")
    return {
        "segmentation": str(path),
        "label_voxels": label_voxels(labels),
        "changed_voxels": int(np.count_nonzero(labels != unsteered)),
        "dice": dice,
        "dice_unsteered": dice_unsteered,
        "provenance": steering_provenance(session, spec, not result.preview).to_json(),
        "spec": spec.to_json(),
        "windows_recomputed": result.windows_recomputed,
        "windows_total": result.windows_total,
        "seconds": round(result.seconds, 4),
        "preview": bool(result.preview),
    }


def register(registry: JobRegistry) -> None:
    registry.add("steer", steer)
