#!/usr/bin/env python3
"""Speed of histogram scoring for 16k latents, against exact per-latent scoring timed in the same run.

    python bench/interpret_scoring.py --cohort /work/runs/baseline/cohorts/adult_test --cases 4

Codes are synthetic (k active latents per layer voxel, log-normal values, a stride-2
layer) on real case grids, ground truth and location atlases (when the cohort has
them). The histogram scorer processes every latent; the exact baseline (for each
latent: build its nearest-neighbour image map in every case, sort the active voxels,
AUROC with ties and the best-threshold Dice per target) runs on a sample of latents
and is extrapolated linearly to all of them.
Also prints the largest AUROC and Dice binning bounds seen, and the exact errors.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from MedSegLensLib.data import Grid, discover_cohort  # noqa: E402
from MedSegLensLib.interpret import LatentScorer, LayerCodes, label_all, latent_records, load_case_maps  # noqa: E402
from MedSegLensLib.interpret.targets import TargetSet, target_masks  # noqa: E402


def synthetic_codes(case_grid: Grid, n_latents: int, k: int, rng: np.random.Generator) -> LayerCodes:
    affine = np.array(case_grid.affine, dtype=float)
    affine[:3, :3] *= 2
    grid = Grid(tuple(-(-n // 2) for n in case_grid.shape), affine)
    voxels = int(np.prod(grid.shape))
    latent = rng.integers(0, n_latents, size=(voxels, k))
    value = rng.lognormal(0.0, 1.0, size=(voxels, k)).astype(np.float32)
    voxel = np.repeat(np.arange(voxels), k)
    latent = latent.reshape(-1)
    unique = np.unique(voxel * n_latents + latent, return_index=True)[1]  # one entry per (voxel, latent)
    return LayerCodes(grid, voxel[unique], latent[unique], value.reshape(-1)[unique], n_latents)


def exact_scores(values: np.ndarray, inside: np.ndarray, positives: int, total: int) -> tuple[float, float]:
    """AUROC (ties 1/2) and best Dice of one latent from its active voxels; every other voxel is a zero."""
    order = np.argsort(-values, kind="stable")
    v, y = values[order], inside[order]
    first = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])  # groups of equal values, largest first
    counts_in = np.add.reduceat(y.astype(np.int64), first) if v.size else np.zeros(0, np.int64)
    counts_all = np.diff(np.append(first, v.size))
    counts_out = counts_all - counts_in
    negatives = total - positives
    zero_in, zero_out = positives - counts_in.sum(), negatives - counts_out.sum()
    out_below = zero_out + np.cumsum(counts_out[::-1])[::-1] - counts_out
    auc = ((counts_in * (out_below + 0.5 * counts_out)).sum() + 0.5 * zero_in * zero_out) / (positives * negatives)
    dice = (2 * np.cumsum(counts_in) / (positives + np.cumsum(counts_all))).max() if v.size else 0.0
    return float(auc), float(dice)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohort", required=True)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--latents", type=int, default=16384)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--sample", type=int, default=24, help="latents scored exactly (extrapolated)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    loaded = [load_case_maps(files) for files in discover_cohort(args.cohort)[: args.cases]]
    cases, maps = [case for case, _ in loaded], [case_maps for _, case_maps in loaded]
    codes = [synthetic_codes(case.grid, args.latents, args.k, rng) for case in cases]
    entries = sum(c.voxel.size for c in codes)

    started = time.perf_counter()
    scorer = LatentScorer(args.latents)
    for case_maps, code in zip(maps, codes):
        scorer.add_case(case_maps, code)
    table = scorer.finish()
    histogram_s = time.perf_counter() - started
    started = time.perf_counter()
    records = latent_records(table, label_all(table))
    records_s = time.perf_counter() - started

    targets = TargetSet.for_maps(True)
    masks = [target_masks(targets, c.label, c.tissue, c.grid.spacing).reshape(len(targets.names), -1) for c in cases]
    sample = rng.choice(args.latents, size=args.sample, replace=False)
    worst = {"auroc": 0.0, "dice": 0.0}
    started = time.perf_counter()
    for latent in sample:
        maps = [code.image_map(int(latent), case.grid).reshape(-1) for case, code in zip(cases, codes)]
        active = [np.flatnonzero(m) for m in maps]
        values = np.concatenate([m[a] for m, a in zip(maps, active)])
        total = sum(m.size for m in maps)
        for t in range(len(targets.names)):
            inside = np.concatenate([mask[t][a] for mask, a in zip(masks, active)])
            positives = int(sum(mask[t].sum() for mask in masks))
            if positives == 0:
                continue
            auc, dice = exact_scores(values, inside, positives, total)
            worst["auroc"] = max(worst["auroc"], abs(auc - table.metrics["auroc"][latent, t]))
            worst["dice"] = max(worst["dice"], dice - table.metrics["dice"][latent, t])
    exact_s = (time.perf_counter() - started) / args.sample * args.latents

    lines = [
        f"{len(cases)} cases of {cases[0].shape}, {args.latents} latents, k={args.k}, stride-2 layer, "
        f"{entries / len(cases):.3g} active entries per case, {args.threads} thread(s)",
        f"histogram scoring, all latents:          {histogram_s:8.1f} s  ({histogram_s / len(cases):.1f} s per case)",
        f"categories, confidences, sentences for {len(records)} latents: {records_s:.1f} s",
        f"exact scoring (extrapolated from {args.sample}): {exact_s:8.1f} s",
        f"speed-up: {exact_s / histogram_s:.1f}x",
        f"largest stated bounds: AUROC {np.nanmax(table.metrics['auroc_error']):.4f}, "
        f"Dice {np.nanmax(table.metrics['dice_error']):.4f}; largest exact errors on the sample: "
        f"AUROC {worst['auroc']:.4f}, Dice {worst['dice']:.4f}",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
