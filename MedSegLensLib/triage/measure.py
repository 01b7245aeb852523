"""Everything triage needs from one case, measured once and kept as a plain JSON record.

    record = measure_case(model, sae, files, settings)

One sliding-window pass with the SAE's layer hooked (the pass `model.logits`
runs) gives the logits and the layer's activations. From them:

- SAE quantities: reconstruction FVU inside the predicted tumour (plus a
  margin) and inside the brain, and per latent its firing count and activation
  mass in the brain and its firing count inside the predicted tumour. Scores
  that need a calibration reference (rare latents, tumour latents) are made
  from these counts later (`reference.py`), so a record never depends on which
  calibration cases were used.
- Baseline quantities from the same logits: softmax entropy and 1 - max
  probability over the predicted tumour, the predicted volume; and the
  predicted volume under MONAI flips of each axis (test-time augmentation).
- The failure label (the project's one definition, `models.evaluation`) when the
  case has a reference segmentation; it is never used by a score.

Seconds are kept per part, so each score's cost per case can be reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from monai.transforms import Flip
from scipy import ndimage

from ..data import CaseFiles
from ..errors import InputError
from ..metrics import REGIONS, brats_scores
from ..models.evaluation import failing_regions
from ..models.inference import PreparedInput, SegmentationModel
from ..sae import SparseAutoencoder, encode_features, layer_features

FLIP_AXES = (0, 1, 2)


@dataclass(frozen=True)
class MeasureSettings:
    """Fixed by the protocol: the margin around the predicted tumour for the SAE's tumour FVU."""

    margin_mm: float = 6.0
    tta: bool = True


def check_modalities(model: SegmentationModel, cases: list[CaseFiles]) -> None:
    """Refuse cases that lack a modality the model reads, before any work."""
    needed = tuple(model.config.modalities)
    for files in cases:
        missing = [m for m in needed if not files.modalities.get(m)]
        if missing:
            raise InputError(
                f"case {files.case_id}: no {', '.join(missing)} image, but the model reads {', '.join(needed)}; "
                "pass a cohort with those modalities"
            )


def _background(model: SegmentationModel) -> int:
    values = model.config.label_values
    return values.index(0) if 0 in values else 0


def _fvu(x: torch.Tensor, x_hat: torch.Tensor, mask: np.ndarray) -> float:
    """Fraction of variance unexplained of the rows under `mask` (C, d, h, w tensors); NaN on an empty mask."""
    where = torch.from_numpy(mask.reshape(-1))
    rows, recon = x.reshape(x.shape[0], -1)[:, where], x_hat.reshape(x.shape[0], -1)[:, where]
    if rows.shape[1] == 0:
        return float("nan")
    total = float(((rows - rows.mean(1, keepdim=True)) ** 2).sum())
    return float(((rows - recon) ** 2).sum()) / max(total, 1e-12)


def _softmax_uncertainty(logits: torch.Tensor, tumour: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    """Mean entropy and 1 - mean max probability over the predicted tumour (the brain where none is predicted)."""
    region = torch.from_numpy(tumour if tumour.any() else brain)
    log_p = torch.log_softmax(logits[0][:, region], dim=0)
    entropy = -(log_p.exp() * log_p).sum(0)
    return {"entropy": float(entropy.mean()), "max_prob": 1.0 - float(log_p.exp().max(0).values.mean())}


def _tta_volumes(model: SegmentationModel, prepared: PreparedInput, background: int, voxel_ml: float) -> list[float]:
    """Predicted tumour volume (ml, model grid) under a MONAI flip of each axis, the flip inverted on the logits."""
    volumes = []
    for axis in FLIP_AXES:
        flip = Flip(spatial_axis=axis)
        flipped = torch.as_tensor(flip(prepared.tensor[0]))[None]
        logits = model.logits(PreparedInput(flipped, prepared.grid, prepared.case_grid, prepared.resampled))
        restored = torch.as_tensor(flip(logits[0]))
        volumes.append(float((restored.argmax(0) != background).sum()) * voxel_ml)
    return volumes


def measure_case(
    model: SegmentationModel, sae: SparseAutoencoder, files: CaseFiles, settings: MeasureSettings = MeasureSettings()
) -> dict:
    """The case's triage record (JSON-ready): SAE counts and FVUs, baseline quantities, failure, seconds."""
    case = files.load(with_labels=bool(files.seg))
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    prepared = model.prepare(case)
    fmap = layer_features(model, prepared, sae.info.layer)
    prediction = model.to_prediction(fmap.logits, prepared)
    seconds["capture"] = time.perf_counter() - start

    start = time.perf_counter()
    codes = encode_features(sae, fmap)
    recon = codes.decode(sae)
    brain_case = case.image.any(0)
    tumour_case = prediction.labels != 0
    brain = fmap.values_at_layer(brain_case)
    tumour = fmap.values_at_layer(tumour_case) & brain
    layer_mm = float(np.mean(fmap.grid.spacing))
    steps = max(1, round(settings.margin_mm / layer_mm))
    near = ndimage.binary_dilation(tumour, iterations=steps) & brain if tumour.any() else brain
    voxel, latent, value = codes.voxel.numpy(), codes.latent.numpy(), codes.value.numpy()
    in_brain, in_tumour = brain.reshape(-1)[voxel], tumour.reshape(-1)[voxel]
    n = sae.n_latents
    sae_part = {
        "fvu_tumour": _fvu(fmap.features, recon, near),
        "fvu_brain": _fvu(fmap.features, recon, brain),
        "brain_voxels": int(brain.sum()),
        "tumour_voxels": int(tumour.sum()),
        "brain_counts": np.bincount(latent[in_brain], minlength=n).tolist(),
        "brain_mass": np.bincount(latent[in_brain], weights=value[in_brain], minlength=n).round(6).tolist(),
        "tumour_counts": np.bincount(latent[in_tumour], minlength=n).tolist(),
    }
    seconds["sae"] = time.perf_counter() - start

    start = time.perf_counter()
    background = _background(model)
    model_tumour = (fmap.logits[0].argmax(0) != background).numpy()
    model_brain = (prepared.tensor[0].abs().sum(0) > 0).cpu().numpy()
    baselines = _softmax_uncertainty(fmap.logits, model_tumour, model_brain)
    seconds["softmax"] = time.perf_counter() - start

    model_voxel_ml = float(np.prod(prepared.grid.spacing)) / 1000.0
    baselines["volumes_ml"] = [float(model_tumour.sum()) * model_voxel_ml]
    if settings.tta:
        start = time.perf_counter()
        baselines["volumes_ml"] += _tta_volumes(model, prepared, background, model_voxel_ml)
        seconds["tta"] = time.perf_counter() - start

    voxel_ml = float(np.prod(case.grid.spacing)) / 1000.0
    record = {
        "case_id": files.case_id,
        "population": files.population,
        "pred_volume_ml": round(float(tumour_case.sum()) * voxel_ml, 4),
        "failure": None,
        "failing_regions": None,
        "sae": sae_part,
        "baselines": baselines,
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
    }
    if case.label is not None:
        row = brats_scores(prediction.labels, case.label, case.grid.spacing, with_hd95=False, structures=REGIONS)
        row["ref_volume_ml"] = float(np.count_nonzero(case.label)) * voxel_ml
        row["pred_volume_ml"] = float(np.count_nonzero(prediction.labels)) * voxel_ml
        failing = failing_regions(row)
        record.update(
            {"failure": bool(failing), "failing_regions": failing, "dice": {r: row[f"dice_{r}"] for r in REGIONS}}
        )
    return record
