"""Choosing one intervention per case: with the reference (oracle) or without it (label-free).

Every selection may also keep the unsteered segmentation ("none"):
- oracle: the candidate with the best failure-region Dice on this case (the paper's per-case choice);
- calibrated: the one candidate with the best mean failure-region Dice over the population's
  labelled calibration cases, applied blind to every test case;
- entropy: per case, the candidate whose prediction is least uncertain inside the steering region;
- volume: per case, the candidate whose failure-region volume change matches the median
  reference/predicted volume ratio learned on the calibration cases (labels used there only).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SELECTIONS = ("oracle", "calibrated", "entropy", "volume")
NONE = "none"


def options(record: dict, method: str) -> list[tuple[str, dict]]:
    """(key, outcome) of the unsteered segmentation and of every candidate of `method` on one case."""
    return [(NONE, record["before"])] + [
        (c["key"], c["outcome"]) for c in record["candidates"] if c["method"] == method
    ]


def methods_of(records: list[dict]) -> list[str]:
    seen: list[str] = []
    for record in records:
        for candidate in record["candidates"]:
            if candidate["method"] not in seen:
                seen.append(candidate["method"])
    return seen


def calibrated_key(records: list[dict], method: str, region: str) -> str:
    """The candidate key (or "none") with the best mean `region` Dice over the calibration records."""
    totals: dict[str, list[float]] = {}
    for record in records:
        for key, out in options(record, method):
            totals.setdefault(key, []).append(out["dice"][region])
    complete = {k: v for k, v in totals.items() if len(v) == len(records)}
    return max(complete, key=lambda k: (float(np.mean(complete[k])), k == NONE))


def volume_target(records: list[dict], region: str) -> float | None:
    """Median log ratio of reference to unsteered predicted volume over calibration records (None if undefined)."""
    ratios = [
        math.log(r["reference_ml"][region] / r["before"]["volume_ml"][region])
        for r in records
        if r["before"]["volume_ml"][region] > 0 and r["reference_ml"][region] > 0
    ]
    return float(np.median(ratios)) if ratios else None


def choose(record: dict, method: str, selection: str, region: str, fitted: dict[str, Any]) -> tuple[str, dict]:
    """(key, outcome) picked for `record` by `selection`; `fitted` holds the calibrated key and volume target."""
    candidates = options(record, method)
    if selection == "oracle":
        return max(candidates, key=lambda kv: (kv[1]["dice"][region], kv[0] == NONE))
    if selection == "calibrated":
        key = fitted["calibrated"][method]
        return next((kv for kv in candidates if kv[0] == key), candidates[0])
    if selection == "entropy":
        return min(candidates, key=lambda kv: (kv[1]["entropy"], kv[0] != NONE))
    if selection == "volume":
        target, before = fitted["volume_target"], record["before"]["volume_ml"][region]
        if target is None or before <= 0:
            return candidates[0]

        def distance(kv):
            volume = kv[1]["volume_ml"][region]
            return abs(math.log(volume / before) - target) if volume > 0 else math.inf

        return min(candidates, key=lambda kv: (distance(kv), kv[0] != NONE))
    raise ValueError(f"unknown selection {selection!r}")
