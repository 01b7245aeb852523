"""How well a score finds failures: AUROC and AUPRC with stratified bootstrap intervals, and paired differences.

A group without both failures and successes has no AUROC: it is reported as
None ("n/a"), never as a number. Bootstrap resamples keep each stratum's size
(stratum = population x failed), so every replicate has both classes, and the
paired difference of two scores uses the same resamples for both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score


def has_both_classes(failed: Sequence[bool]) -> bool:
    values = np.asarray(failed, dtype=bool)
    return bool(values.any() and not values.all())


def auroc(scores: Sequence[float], failed: Sequence[bool]) -> float | None:
    """Probability that a failing case scores above a succeeding one (ties count half); None without both.

    The Mann-Whitney form (mid-ranks), equal to sklearn's `roc_auc_score` and much faster, which the
    thousands of bootstrap replicates need.
    """
    failed = np.asarray(failed, bool)
    if not has_both_classes(failed):
        return None
    ranks = rankdata(np.asarray(scores, float))
    positives = int(failed.sum())
    negatives = len(failed) - positives
    return float((ranks[failed].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def auprc(scores: Sequence[float], failed: Sequence[bool]) -> float | None:
    """Average precision of ranking by score; None without both classes."""
    if not has_both_classes(failed):
        return None
    return float(average_precision_score(np.asarray(failed, bool), np.asarray(scores, float)))


def stratified_resamples(strata: Sequence, replicates: int, seed: int) -> np.ndarray:
    """(replicates, n) case indices, each stratum resampled with replacement to its own size."""
    strata = np.asarray([str(s) for s in strata])
    rng = np.random.default_rng(seed)
    out = np.empty((replicates, len(strata)), dtype=np.int64)
    position = 0
    for value in sorted(set(strata.tolist())):
        members = np.flatnonzero(strata == value)
        out[:, position : position + len(members)] = rng.choice(members, size=(replicates, len(members)))
        position += len(members)
    return out


def _interval(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def bootstrap(
    metric, scores: Sequence[float], failed: Sequence[bool], resamples: np.ndarray
) -> tuple[float | None, float | None, float | None]:
    """(value, 2.5th, 97.5th percentile) of `metric` (auroc or auprc) over the resamples."""
    scores, failed = np.asarray(scores, float), np.asarray(failed, bool)
    value = metric(scores, failed)
    if value is None:
        return None, None, None
    replicates = [metric(scores[i], failed[i]) for i in resamples]
    return (value, *_interval([r for r in replicates if r is not None]))


def paired_auroc_difference(
    first: Sequence[float], second: Sequence[float], failed: Sequence[bool], resamples: np.ndarray
) -> tuple[float | None, float | None, float | None]:
    """AUROC(first) - AUROC(second) on the same cases, with its interval over the same resamples."""
    first, second, failed = np.asarray(first, float), np.asarray(second, float), np.asarray(failed, bool)
    if not has_both_classes(failed):
        return None, None, None
    value = auroc(first, failed) - auroc(second, failed)
    replicates = [auroc(first[i], failed[i]) - auroc(second[i], failed[i]) for i in resamples]
    return (value, *_interval(replicates))
