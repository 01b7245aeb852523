"""Evaluate a trained SAE on held-out cases: fidelity, sparsity, dead latents, Dice recovered, alignment.

Per case, one capture pass gives the layer map and the original logits; the
network then runs twice more with the layer's output replaced (by the SAE's
reconstruction, and by zeros) in every sliding window. Fidelity is measured on
the case's stratified rows (the distribution the SAE was trained on, sampled
with the same quotas) and, as a second view, on every layer voxel inside the
brain. Dice recovered per region = (Dice_SAE - Dice_zero) / (Dice_orig - Dice_zero)
from the mean Dice over the labelled cases.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data import Case, CaseFiles
from ..metrics import REGIONS, brats_scores
from ..models.inference import PreparedInput, SegmentationModel
from .alignment import RegionAlignment, region_alignment
from .capture import FeatureMap, layer_feature_maps
from .encode import encode_rows
from .extract import brain_mask, sample_case_rows
from .fidelity import FidelityAccumulator, FidelityReport, dice_recovered, evaluate_fidelity
from .io import check_compatible
from .model import SparseAutoencoder
from .splice import Transform, replaced_output, sae_reconstruction, zero_ablation
from .strata import DEFAULT_QUOTAS

MODES = ("original", "sae", "zero_ablation")
CaseProgress = Callable[[int, int, str], None]  # (cases done, total, case id)


def region_dice(labels: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Dice of WT, TC and ET (BraTS conventions, `MedSegLensLib.metrics`)."""
    scores = brats_scores(labels, reference, with_hd95=False, structures=REGIONS)
    return {region: scores[f"dice_{region}"] for region in REGIONS}


def spliced_dice(
    model: SegmentationModel,
    prepared: PreparedInput,
    reference: np.ndarray,
    layer: str,
    transforms: Mapping[str, Transform],
    precision: str = "fp32",
) -> dict[str, dict[str, float]]:
    """Dice per region with the layer's output replaced by each named transform."""
    out = {}
    for name, transform in transforms.items():
        with replaced_output(model.network, layer, transform):
            logits = model.logits(prepared, precision=precision)
        out[name] = region_dice(model.to_prediction(logits, prepared).labels, reference)
    return out


def inside_brain_rows(fmap: FeatureMap, case: Case) -> torch.Tensor:
    """Rows of the layer voxels whose centre falls inside the brain."""
    mask = torch.from_numpy(fmap.values_at_layer(brain_mask(case)).reshape(-1))
    return fmap.rows()[mask]


def mean_dice(per_case: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return {region: float(np.mean([d[region] for d in per_case])) for region in REGIONS} if per_case else {}


@dataclass
class SAEEvaluation:
    """Everything `medseglens sae eval` writes."""

    layer: str
    cases: int
    labelled_cases: int
    fidelity: FidelityReport
    fidelity_brain_voxels: FidelityReport
    dice: dict[str, dict[str, float]]
    dice_recovered: dict[str, float]
    alignment: dict[str, RegionAlignment]
    per_case: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "layer": self.layer,
            "cases": self.cases,
            "labelled_cases": self.labelled_cases,
            "fidelity_stratified_rows": self.fidelity.to_dict(),
            "fidelity_brain_voxels": self.fidelity_brain_voxels.to_dict(),
            "dice_mean": self.dice,
            "dice_recovered": self.dice_recovered,
            "alignment": {region: a.to_dict() for region, a in self.alignment.items()},
            "per_case": self.per_case,
        }


def evaluate_sae(
    model: SegmentationModel,
    sae: SparseAutoencoder,
    cases: Sequence[CaseFiles],
    layer: str | None = None,
    quotas: Mapping[str, int] | None = None,
    seed: int = 0,
    progress: CaseProgress | None = None,
    precision: str = "fp32",
) -> SAEEvaluation:
    """Held-out evaluation of `sae` at its layer of `model` (refused if they do not belong together)."""
    return evaluate_saes(model, {"sae": (layer or sae.info.layer, sae)}, cases, quotas, seed, progress, precision)[
        "sae"
    ]


def evaluate_saes(
    model: SegmentationModel,
    saes: Mapping[str, tuple[str, SparseAutoencoder]],
    cases: Sequence[CaseFiles],
    quotas: Mapping[str, int] | None = None,
    seed: int = 0,
    progress: CaseProgress | None = None,
    precision: str = "fp32",
) -> dict[str, SAEEvaluation]:
    """Several SAEs (name -> (layer, sae)) of one model on the same held-out cases.

    One capture pass per case serves every layer; zero ablation runs once per
    layer; each SAE adds one spliced pass per case.
    """
    for layer, sae in saes.values():
        check_compatible(sae, model.fingerprint, layer, sae.d_in)
    quotas = dict(DEFAULT_QUOTAS if quotas is None else quotas)
    layers = sorted({layer for layer, _ in saes.values()})
    stratified = {layer: [] for layer in layers}
    labels = {layer: [] for layer in layers}
    brain = {name: FidelityAccumulator(sae) for name, (_, sae) in saes.items()}
    per_case = {name: [] for name in saes}
    for index, files in enumerate(cases):
        case = files.load()
        prepared = model.prepare(case)
        maps = layer_feature_maps(model, prepared, layers, precision)
        original = (
            region_dice(model.to_prediction(next(iter(maps.values())).logits, prepared).labels, case.label)
            if case.label is not None
            else None
        )
        for layer, fmap in maps.items():
            rows = sample_case_rows(fmap, case, quotas, seed)
            stratified[layer].append(rows.activations)
            labels[layer].append(rows.label)
            named = {name: sae for name, (sae_layer, sae) in saes.items() if sae_layer == layer}
            inside = inside_brain_rows(fmap, case)
            for name, sae in named.items():
                check_compatible(sae, model.fingerprint, layer, fmap.channels)
                brain[name].add(inside)
            if original is None:
                continue
            transforms = {
                "zero_ablation": zero_ablation,
                **{name: sae_reconstruction(sae) for name, sae in named.items()},
            }
            dice = spliced_dice(model, prepared, case.label, layer, transforms, precision)
            for name in named:
                per_case[name].append(
                    {
                        "case_id": case.case_id,
                        "population": case.population,
                        "dice": {"original": original, "sae": dice[name], "zero_ablation": dice["zero_ablation"]},
                    }
                )
        if progress is not None:
            progress(index + 1, len(cases), files.case_id)
    results = {}
    for name, (layer, sae) in saes.items():
        rows_all = torch.cat(stratified[layer])
        means = {mode: mean_dice([c["dice"][mode] for c in per_case[name]]) for mode in MODES}
        results[name] = SAEEvaluation(
            layer=layer,
            cases=len(cases),
            labelled_cases=len(per_case[name]),
            fidelity=evaluate_fidelity(sae, rows_all.split(8192)),
            fidelity_brain_voxels=brain[name].report(),
            dice=means,
            dice_recovered=dice_recovered(means.__getitem__) if per_case[name] else {},
            alignment=region_alignment(encode_rows(sae, rows_all), np.concatenate(labels[layer]), sae.n_latents),
            per_case=per_case[name],
        )
    return results
