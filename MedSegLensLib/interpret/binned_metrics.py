"""Voxel AUROC and best-threshold overlap scores from activation histograms, with binning bounds.

Inputs per latent: counts of target voxels (`inside`) and of all voxels (`total`)
in each active bin (see `histograms.py`), plus the target's and the volume's
voxel totals. Inactive voxels form an exact zero bin below every active bin.

Binning error, stated per latent and target:
- AUROC (ties count 1/2) is exact except for pairs that share an active bin, whose
  order the histogram does not know: |AUROC_exact - AUROC| <= 1/2 * sum_b p_in(b) p_out(b)
  over active bins (`auroc_error`).
- Thresholds are tried at every bin's lower edge ("activation >= edge"), where the
  scores are exact; among equally good ones the highest is kept. A threshold inside bin b
  can at best add all of b's target voxels and none of its others, so the best exact Dice lies in
  [dice, dice + dice_error] (`dice_error`, same for IoU through IoU = D / (2 - D)).
- A threshold chosen elsewhere (on other cases: `bins`) is a bin's lower edge too, so the
  scores at it are exact (`dice_error` 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TargetScores:
    """Arrays over latents for one target."""

    auroc: np.ndarray
    auroc_error: np.ndarray
    dice: np.ndarray
    dice_error: np.ndarray
    iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    kappa: np.ndarray
    threshold: np.ndarray
    predicted_voxels: np.ndarray
    bin: np.ndarray  # index of the threshold's bin (-1 where there is none)


def _reverse_cumsum(a: np.ndarray) -> np.ndarray:
    """Sum of bins >= j along the last axis, with one extra trailing zero column."""
    out = np.zeros(a.shape[:-1] + (a.shape[-1] + 1,), dtype=np.float64)
    out[..., :-1] = np.cumsum(a[..., ::-1], axis=-1)[..., ::-1]
    return out


def score_target(
    inside: np.ndarray,
    total: np.ndarray,
    positives: int,
    voxels: int,
    lower_edges: np.ndarray,
    bins: np.ndarray | None = None,
) -> TargetScores:
    """Scores of every latent against one target.

    inside, total: (latents, bins) counts of target voxels and of all voxels per active bin;
    positives: target voxels in all cases; voxels: all voxels; lower_edges: (latents, bins);
    bins: (latents,) threshold bins chosen on other cases (-1: none), None: the best-Dice bin here.
    """
    if positives <= 0 or positives >= voxels:
        nan = np.full(inside.shape[0], np.nan)
        return TargetScores(
            *(nan.copy() for _ in range(8)),
            threshold=nan.copy(),
            predicted_voxels=nan.copy(),
            bin=np.full(inside.shape[0], -1),
        )
    inside = inside.astype(np.float64)
    outside = total.astype(np.float64) - inside
    negatives = float(voxels - positives)
    p, n = float(positives), negatives
    with np.errstate(divide="ignore", invalid="ignore"):
        p_in = inside / p
        p_out = outside / n
        out_zero = 1.0 - p_out.sum(axis=1)
        in_zero = 1.0 - p_in.sum(axis=1)
        # out-voxels strictly below each active bin: the zero bin plus lower active bins
        below = out_zero[:, None] + np.cumsum(p_out, axis=1) - p_out
        auroc = (p_in * (below + 0.5 * p_out)).sum(axis=1) + 0.5 * in_zero * out_zero
        auroc_error = 0.5 * (p_in * p_out).sum(axis=1)

        tp = _reverse_cumsum(inside)  # predicted = bins >= j; column `bins` = nothing predicted
        predicted = _reverse_cumsum(inside + outside)
        dice_all = 2 * tp / (p + predicted)
        # the highest threshold among equally good ones (empty bins make plateaus): the most specific
        candidates = np.nan_to_num(dice_all[:, :-1], nan=-1.0)
        best = candidates.shape[1] - 1 - np.argmax(candidates[:, ::-1], axis=1) if bins is None else bins
        rows = np.arange(inside.shape[0])
        missing = best < 0
        best = np.where(missing, 0, best)
        tp_b, pred_b = tp[rows, best], predicted[rows, best]
        dice = dice_all[rows, best]
        # optimistic fill of each bin from the bins above it
        fp_above = predicted[:, 1:] - tp[:, 1:]
        tp_fill = tp[:, 1:] + inside
        upper = np.nanmax(2 * tp_fill / (p + tp_fill + fp_above), axis=1)
        fp_b = pred_b - tp_b
        tn_b = negatives - fp_b
        agreement = (tp_b + tn_b) / voxels
        expected = (pred_b * p + (voxels - pred_b) * (voxels - p)) / float(voxels) ** 2
        kappa = (agreement - expected) / (1 - expected)
        scores = TargetScores(
            auroc=auroc,
            auroc_error=auroc_error,
            dice=dice,
            dice_error=np.maximum(upper - dice, 0.0) if bins is None else np.zeros_like(dice),
            iou=tp_b / (p + pred_b - tp_b),
            precision=np.where(pred_b > 0, tp_b / np.where(pred_b > 0, pred_b, 1), 0.0),
            recall=tp_b / p,
            kappa=kappa,
            threshold=lower_edges[rows, best],
            predicted_voxels=pred_b,
            bin=np.where(missing, -1, best),
        )
        for name in ("dice", "dice_error", "iou", "precision", "recall", "kappa", "threshold", "predicted_voxels"):
            getattr(scores, name)[missing] = np.nan
        return scores
