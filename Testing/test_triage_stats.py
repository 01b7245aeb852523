"""Triage statistics on inputs whose answers are known: AUROC, AUPRC, bootstrap intervals, paired differences."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from MedSegLensLib.triage.stats import auprc, auroc, bootstrap, paired_auroc_difference, stratified_resamples

FAILED = [False, False, False, True, True]
RISING = [0.1, 0.2, 0.3, 0.8, 0.9]


def test_perfect_and_reversed_separation():
    assert auroc(RISING, FAILED) == 1.0
    assert auroc([-v for v in RISING], FAILED) == 0.0
    assert auprc(RISING, FAILED) == 1.0
    assert auroc([0.5] * 5, FAILED) == 0.5  # ties count half


def test_auroc_is_sklearns_with_ties():
    rng = np.random.default_rng(5)
    failed = rng.random(60) < 0.3
    scores = rng.integers(0, 6, 60).astype(float)  # many ties
    assert auroc(scores, failed) == pytest.approx(roc_auc_score(failed, scores), abs=1e-12)


def test_one_class_has_no_auroc():
    assert auroc(RISING, [False] * 5) is None
    assert auprc(RISING, [True] * 5) is None
    resamples = stratified_resamples(["a"] * 5, 10, seed=0)
    assert bootstrap(auroc, RISING, [False] * 5, resamples) == (None, None, None)
    assert paired_auroc_difference(RISING, RISING, [True] * 5, resamples) == (None, None, None)


def test_stratified_resamples_keep_each_stratum():
    strata = ["x:False", "x:False", "x:True", "y:False", "y:True", "y:True"]
    resamples = stratified_resamples(strata, 200, seed=3)
    assert resamples.shape == (200, 6)
    labels = np.asarray(strata)
    for row in resamples:
        assert sorted(labels[row].tolist()) == sorted(strata)  # each stratum keeps its size
    assert np.array_equal(resamples, stratified_resamples(strata, 200, seed=3))


def test_bootstrap_interval_and_paired_difference():
    failed = [False] * 20 + [True] * 20
    rng = np.random.default_rng(0)
    good = np.r_[rng.normal(0, 1, 20), rng.normal(3, 1, 20)]
    useless = rng.normal(0, 1, 40)
    resamples = stratified_resamples([str(f) for f in failed], 200, seed=1)
    value, low, high = bootstrap(auroc, good, failed, resamples)
    assert low <= value <= high and low > 0.8
    difference, d_low, d_high = paired_auroc_difference(good, useless, failed, resamples)
    assert difference == pytest.approx(auroc(good, failed) - auroc(useless, failed))
    assert d_low > 0 and d_low <= difference <= d_high
    assert paired_auroc_difference(good, good, failed, resamples) == (0.0, 0.0, 0.0)
