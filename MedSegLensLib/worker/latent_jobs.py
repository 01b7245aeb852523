"""The latent jobs: `encode` (a case's active latents and the model's segmentation) and `latent_map` (one map).

encode    params: model, sae, case (folder or {t1n, t1c, t2w, t2f: file}), case_id?,
                  labels? (latents.json; default: the SAE folder's), populations? (populations.json)
          result: segmentation (labels file in the input's geometry), case_id, label_voxels, model {fingerprint,
                  architecture}, sae {sha256, layer, n_latents, kind}, brain_voxels, latents: one row per latent
                  active in the case {latent, max, mean_active, active_fraction, active_voxels, category,
                  confidence, description, specificity, specificity_score}, strongest first; steering {modes,
                  strength_ranges, neutral, regions} (what the `steer` job accepts, for the steering panel)
latent_map params: model, sae, case, latent
          result: map (float32 file on the input's grid and geometry), latent, peak, peak_ras [R, A, S] (mm)
uncertainty_map params: model, sae, case
          result: map (float32 file, input grid: voxel-wise softmax entropy in nats, 0 outside the brain),
                  units, peak (nats), max_entropy (ln of the class count)

One pass of the model with the SAE's layer hooked gives both the segmentation
(the same sliding windows and logits as `segment`) and the sparse codes of every
layer voxel; the codes stay cached, so `latent_map` only densifies one latent
and resamples it onto the image grid: stepping through latents costs no network
run. The pass's logits stay cached too, for `uncertainty_map` (the entropy is
computed only when asked: ~0.8 s at BraTS size on one core). Statistics are on
the layer's own grid: "active" means a non-zero code,
`active_fraction` is the share of the brain's layer voxels where the latent is
active (brain = voxels where any modality is non-zero, the skull-stripped
convention the models' normalisation uses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..steering_contract import steering_options
from .analysis_inputs import AnalysisInputs, analysis_inputs
from .latent_annotations import read_annotations
from .registry import JobContext, JobRegistry
from .segment_job import require

MAP_FILE_SUFFIX = ".nii"  # uncompressed: written and read in milliseconds, deleted once shown


@dataclass
class CaseAnalysis:
    """What one pass over a case leaves in the cache."""

    codes: Any  # sae.CaseCodes
    labels: np.ndarray  # the model's labels on case.grid
    in_brain: np.ndarray  # bool per layer voxel (C order of codes.shape)
    logits: Any  # torch (1, classes, *model grid) of the same pass
    prepared: Any  # models.PreparedInput's grids: the logits' grid and the case's (its tensor is dropped)


def brain_mask(image: np.ndarray) -> np.ndarray:
    """Voxels where any modality is non-zero; every voxel when nothing is exactly zero (not skull-stripped)."""
    mask = np.any(image != 0, axis=0)
    return mask if mask.any() and not mask.all() else np.ones(image.shape[1:], dtype=bool)


def analyse_case(inputs: AnalysisInputs) -> CaseAnalysis:
    """Segmentation and sparse codes of the case from one hooked pass of the model."""
    from ..models.inference import PreparedInput
    from ..sae import encode_features, layer_features
    from ..sae.capture import layer_voxels_in

    model, case = inputs.model, inputs.case
    prepared = model.prepare(case)
    fmap = layer_features(model, prepared, inputs.sae.info.layer)
    codes = encode_features(inputs.sae, fmap)
    labels = np.asarray(model.to_prediction(fmap.logits, prepared).labels, dtype=np.uint8)
    under = layer_voxels_in(codes.grid, codes.case_grid)
    in_brain = brain_mask(case.image)[under[..., 0], under[..., 1], under[..., 2]].reshape(-1)
    grids = PreparedInput(None, prepared.grid, prepared.case_grid, prepared.resampled)
    return CaseAnalysis(codes, labels, in_brain, fmap.logits, grids)


def cached_analysis(params: dict[str, Any], ctx: JobContext) -> tuple[AnalysisInputs, CaseAnalysis]:
    inputs = analysis_inputs(params, ctx, 0.0, 0.3)
    ctx.progress(0.35, "running the model with the SAE's layer hooked")
    analysis = ctx.cache.get_or_create("analysis", inputs.key, lambda: analyse_case(inputs))
    return inputs, analysis


def latent_statistics(analysis: CaseAnalysis) -> dict[str, np.ndarray]:
    """Per latent: layer voxels where active (all, in the brain), peak and mean code where active."""
    codes = analysis.codes
    latent, value, voxel = codes.latent.numpy(), codes.value.numpy().astype(np.float64), codes.voxel.numpy()
    n = codes.n_latents
    count = np.bincount(latent, minlength=n)
    peak = np.zeros(n)
    np.maximum.at(peak, latent, value)
    total = np.bincount(latent, weights=value, minlength=n)
    in_brain = np.bincount(latent[analysis.in_brain[voxel]], minlength=n)
    return {
        "count": count,
        "brain_count": in_brain,
        "peak": peak,
        "mean": np.divide(total, count, out=np.zeros(n), where=count > 0),
    }


def label_voxels(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts) if v != 0}


def encode(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    inputs, analysis = cached_analysis(params, ctx)
    ctx.progress(0.85, "summarising the active latents")
    stats = latent_statistics(analysis)
    brain_voxels = int(analysis.in_brain.sum())
    sae, layer = inputs.sae, inputs.sae.info.layer
    notes = read_annotations(
        inputs.sae_dir,
        sae.n_latents,
        layer,
        params.get("labels"),
        params.get("populations"),
        warn=lambda message: ctx.log(message, "warning"),
    )
    rows = []
    for j in np.flatnonzero(stats["count"]):
        note = notes.get(int(j))
        rows.append(
            {
                "latent": int(j),
                "max": float(stats["peak"][j]),
                "mean_active": float(stats["mean"][j]),
                "active_fraction": float(stats["brain_count"][j]) / max(brain_voxels, 1),
                "active_voxels": int(stats["count"][j]),
                "category": note.category if note else "",
                "confidence": note.confidence if note else None,
                "description": note.description if note else "",
                "specificity": note.specificity if note else "",
                "specificity_score": note.specificity_score if note else None,
            }
        )
    rows.sort(key=lambda row: (-row["max"], row["latent"]))
    ctx.progress(0.9, "writing the segmentation")
    case = inputs.case
    path = case.write_like_input(analysis.labels, ctx.output_path("segmentation.nii.gz"), dtype=np.uint8)
    ctx.progress(1.0, f"{len(rows)} active latents")
    return {
        "segmentation": str(path),
        "case_id": case.case_id,
        "label_voxels": label_voxels(analysis.labels),
        "model": {"fingerprint": inputs.model.fingerprint, "architecture": inputs.model.config.architecture},
        "sae": {"sha256": inputs.sae_sha256, "layer": layer, "n_latents": sae.n_latents, "kind": sae.config.kind},
        "brain_voxels": brain_voxels,
        "latents": rows,
        "steering": steering_options(),
    }


def latent_map(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    latent = require(params, "latent")
    if isinstance(latent, bool) or not isinstance(latent, int):
        raise ParameterError(f"'latent' must be a latent index (an integer), not {latent!r}")
    inputs, analysis = cached_analysis(params, ctx)
    ctx.progress(0.9, f"latent {latent}")
    activation = analysis.codes.latent_map(latent, on="image")
    case = inputs.case
    peak_voxel = np.unravel_index(int(np.argmax(activation)), activation.shape)
    peak_ras = case.grid.affine @ np.array([*peak_voxel, 1.0])
    path = case.write_like_input(activation, ctx.output_path(f"latent-{latent}{MAP_FILE_SUFFIX}"), dtype=np.float32)
    ctx.progress(1.0, "done")
    return {
        "map": str(path),
        "latent": latent,
        "peak": float(activation.max()),
        "peak_ras": [float(v) for v in peak_ras[:3]],
    }


def softmax_entropy(analysis: CaseAnalysis, brain: np.ndarray) -> np.ndarray:
    """Voxel-wise entropy (nats) of the model's softmax on the case grid, 0 outside `brain` (where no tumour is
    read: the skull-stripped background's entropy says nothing about the segmentation)."""
    import torch

    from ..data.geometry import resample_to_grid

    with torch.no_grad():
        log_p = torch.log_softmax(analysis.logits[0].float(), dim=0)
        entropy = (-(log_p.exp() * log_p).sum(0)).clamp_min(0.0).cpu().numpy()
    grids = analysis.prepared
    if grids.resampled:
        entropy = resample_to_grid(entropy, grids.grid, grids.case_grid, order=1)
    return np.where(brain, entropy, 0.0).astype(np.float32)


def uncertainty_map(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    inputs, analysis = cached_analysis(params, ctx)
    ctx.progress(0.9, "softmax entropy")
    entropy = softmax_entropy(analysis, brain_mask(inputs.case.image))
    path = inputs.case.write_like_input(entropy, ctx.output_path(f"uncertainty{MAP_FILE_SUFFIX}"), dtype=np.float32)
    ctx.progress(1.0, "done")
    return {
        "map": str(path),
        "units": "softmax entropy (nats)",
        "peak": float(entropy.max()),
        "max_entropy": float(np.log(analysis.logits.shape[1])),
    }


def register(registry: JobRegistry) -> None:
    registry.add("encode", encode)
    registry.add("latent_map", latent_map)
    registry.add("uncertainty_map", uncertainty_map)
