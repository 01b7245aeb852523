"""Histogram scores against exact computation: AUROC and best-threshold Dice within the stated binning bounds."""

from __future__ import annotations

import numpy as np
import pytest
from interpret_cases import N_LATENTS, RANDOM, layer_grid, make_cohorts, planted_layer_maps
from scipy.stats import rankdata

from MedSegLensLib.data import Grid, discover_cohorts
from MedSegLensLib.interpret import CaseMaps, LatentScorer, LayerCodes, ScoringSettings, layer_index
from MedSegLensLib.interpret.firing import LevelSums, level_keys, threshold_levels
from MedSegLensLib.interpret.histograms import LogHistograms
from MedSegLensLib.sae.capture import layer_grid as capture_layer_grid
from MedSegLensLib.sae.capture import resample_layer_volume

EXACT_TARGETS = {
    "ED": lambda lab, tis: lab == 2,
    "ET": lambda lab, tis: lab == 3,
    "CSF": lambda lab, tis: (tis == 1) & (lab == 0),
    "WM": lambda lab, tis: (tis == 3) & (lab == 0),
    "background": lambda lab, tis: (tis == 0) & (lab == 0),
}


def exact_auroc(values: np.ndarray, inside: np.ndarray) -> float:
    ranks = rankdata(values)
    p, n = int(inside.sum()), int((~inside).sum())
    return float((ranks[inside].sum() - p * (p + 1) / 2) / (p * n))


def exact_best_dice(values: np.ndarray, inside: np.ndarray) -> float:
    """Best Dice of "value >= t" over every threshold t > 0 (evaluated where the sorted values change)."""
    order = np.argsort(-values, kind="stable")
    v, y = values[order], inside[order]
    tp = np.cumsum(y)
    predicted = np.arange(1, v.size + 1)
    last_of_value = np.r_[v[1:] != v[:-1], True] & (v > 0)
    dice = 2 * tp / (inside.sum() + predicted)
    return float(dice[last_of_value].max()) if last_of_value.any() else 0.0


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Planted codes on a stride-2 layer, scaled by 8**case so the histogram windows must slide."""
    cases = [files.load() for files in discover_cohorts(make_cohorts(tmp_path_factory.mktemp("cohorts")))]
    scorer = LatentScorer(N_LATENTS, ScoringSettings(chunk_entries=500))  # tiny chunks: exercise chunking
    maps = {}
    for index, case in enumerate(cases):
        layer = planted_layer_maps(case, seed=index, stride=2)
        layer[RANDOM] *= 8.0**index
        grid = layer_grid(case.grid, stride=2)
        scorer.add_case(CaseMaps.from_case(case), LayerCodes.from_dense(layer, grid))
        # the image-grid maps by an independent route: the capture package's order-0 resampling
        maps[case.case_id] = np.stack([resample_layer_volume(m, grid, case.grid, order=0) for m in layer])
    return scorer.finish(), cases, maps


def test_auroc_and_dice_match_exact_computation_within_the_binning_bounds(scored):
    table, cases, maps = scored
    values = np.concatenate([maps[c.case_id].reshape(N_LATENTS, -1) for c in cases], axis=1)
    checked = 0
    for target, mask_of in EXACT_TARGETS.items():
        inside = np.concatenate([mask_of(c.label, c.tissue).reshape(-1) for c in cases])
        t = table.targets.index(target)
        assert table.positives[t] == inside.sum()
        for latent in range(N_LATENTS):
            auc, dice = exact_auroc(values[latent], inside), exact_best_dice(values[latent], inside)
            m = {name: table.metrics[name][latent, t] for name in ("auroc", "auroc_error", "dice", "dice_error")}
            assert abs(auc - m["auroc"]) <= m["auroc_error"] + 1e-9, (target, latent)
            assert m["dice"] - 1e-9 <= dice <= m["dice"] + m["dice_error"] + 1e-9, (target, latent)
            checked += 1
    assert checked == len(EXACT_TARGETS) * N_LATENTS
    # the bounds are informative, not vacuous, even for the random latent whose values span 27 octaves
    # across the cases (more than a 16-octave window: early cases' small values merged into bin 0)
    assert table.metrics["auroc_error"][RANDOM].max() < 0.02
    assert table.metrics["dice_error"][RANDOM].max() < 0.1


def test_precision_recall_iou_agree_with_the_chosen_threshold(scored):
    table, cases, maps = scored
    values = np.concatenate([maps[c.case_id].reshape(N_LATENTS, -1) for c in cases], axis=1)
    inside = np.concatenate([(c.label == 2).reshape(-1) for c in cases])
    t = table.targets.index("ED")
    for latent in range(N_LATENTS):
        threshold = table.metrics["threshold"][latent, t]
        if not np.isfinite(threshold):
            continue
        predicted = values[latent] >= threshold if threshold > 0 else values[latent] > 0
        tp = np.sum(predicted & inside)
        assert table.metrics["dice"][latent, t] == pytest.approx(2 * tp / (inside.sum() + predicted.sum()), abs=1e-9)
        assert table.metrics["recall"][latent, t] == pytest.approx(tp / inside.sum(), abs=1e-9)
        assert table.metrics["iou"][latent, t] == pytest.approx(tp / np.sum(predicted | inside), abs=1e-9)
        if predicted.any():
            assert table.metrics["precision"][latent, t] == pytest.approx(tp / predicted.sum(), abs=1e-9)


def test_sliding_windows_keep_every_count_and_bin_exactly(rng):
    hist = LogHistograms(n_latents=2, n_columns=1, bins_per_octave=4, n_bins=16)
    batches = [rng.lognormal(0, 1, 500) * scale for scale in (1.0, 30.0, 0.01, 1000.0)]
    for values in batches:
        hist.add(np.zeros(values.size, dtype=np.int64), values, np.ones((values.size, 1)))
    everything = np.concatenate(batches)
    assert hist.counts[0, :, 0].sum() == everything.size and hist.counts[1].sum() == 0
    assert not hist.seen[1]
    edges = hist.lower_edges()[0]
    assert edges[-1] <= everything.max() < edges[-1] * hist.bin_ratio  # the top bin holds the maximum
    expected = np.searchsorted(edges[1:], everything, side="right")  # bin 0 holds everything below edge 1
    np.testing.assert_array_equal(hist.counts[0, :, 0], np.bincount(expected, minlength=16))


def test_layer_index_is_capture_order_zero_resampling(rng):
    case_grid = Grid((23, 19, 17), np.array([[2.0, 0, 0, -20], [0, 2.0, 0, 5], [0, 0, 2.5, 1], [0, 0, 0, 1]]))
    for stride, shape in (((2, 2, 2), (12, 10, 9)), ((4, 4, 4), (6, 5, 5)), ((1.5, 1.5, 1.5), (16, 13, 12))):
        grid = capture_layer_grid(case_grid, stride, shape)
        layer_map = rng.random(shape).astype(np.float32)
        expected = resample_layer_volume(layer_map, grid, case_grid, order=0)
        np.testing.assert_array_equal(layer_map.reshape(-1)[layer_index(case_grid, grid)], expected)


def test_level_sums_cut_at_any_threshold_equal_brute_force(rng):
    """Volumes kept per latent and value level, merged in batches, summed at or above per-latent thresholds."""
    n_latents, per_batch = 50, 600_000  # three batches: one merge happens mid-way
    batches = [
        (rng.integers(0, n_latents, per_batch), rng.lognormal(0, 2, per_batch), rng.random(per_batch)) for _ in range(3)
    ]
    sums = LevelSums(n_latents, n_columns=2)
    for latent, value, weight in batches:
        sums.add(level_keys(latent, value, 4), weight, column=latent % 2)
    latent, value, weight = (np.concatenate(parts) for parts in zip(*batches))
    thresholds = 2.0 ** (rng.integers(-12, 12, n_latents) / 4)
    thresholds[:5] = 0.0  # any activity
    got = sums.at_or_above(threshold_levels(thresholds, 4))
    above = value >= thresholds[latent]
    expected = np.zeros((n_latents, 2))
    np.add.at(expected, (latent[above], latent[above] % 2), weight[above])
    np.testing.assert_allclose(got, expected, rtol=1e-9)
