"""The benchmark's selection rules (protocol "selections"): oracle apart from the label-free ones.

- oracle: the option (unsteered or a candidate) with the best score on this case: uses the reference;
- calibrated: the one option with the best mean score over the population's calibration cases;
- tto: per case, the option whose predicted composition is closest to the calibration references
  (label-free on the test case: only predicted volumes enter);
- gated-calibrated: the calibrated option, but the unsteered segmentation where the SAE reconstructs
  the case's region worse than the 90th percentile of the calibration cases.
Ties: the unsteered segmentation first, then the smaller magnitude, then candidate order.
"""

from __future__ import annotations

import math

import numpy as np

NONE = "none"
SELECTIONS = ("oracle", "calibrated", "tto", "gated-calibrated")
LABEL_FREE = ("calibrated", "tto", "gated-calibrated")
FVU_QUANTILE = 0.9


def case_score(out: dict, regions=("WT", "TC", "ET")) -> float:
    return min(out["dice"][r] for r in regions)


def options(record: dict, method: str) -> list[tuple[str, dict, tuple]]:
    """(key, outcome, tie order) of the unsteered segmentation and of each candidate of `method`."""
    found = [(NONE, record["before"], (0, 0.0, 0))]
    for position, c in enumerate(record["candidates"]):
        if c["method"] == method:
            found.append((c["key"], c["outcome"], (1, c["magnitude"], position)))
    return found


def methods_in(records: list[dict]) -> list[str]:
    seen: list[str] = []
    for record in records:
        for c in record.get("candidates", []):
            if c["method"] not in seen:
                seen.append(c["method"])
    return seen


def _composition(out: dict) -> tuple[float, float, float] | None:
    volume = out["volume_ml"]
    wt = volume["WT"]
    if wt <= 0:
        return None
    return wt, volume["TC"] / wt, volume["ET"] / wt


def fit_population(records: list[dict], protocol) -> dict:
    """What the label-free rules learn from a population's labelled calibration records."""
    regions = protocol.regions
    calibrated = {}
    for method in methods_in(records):
        totals: dict[str, list[float]] = {}
        order: dict[str, tuple] = {}
        for record in records:
            for key, out, tie in options(record, method):
                totals.setdefault(key, []).append(case_score(out, regions))
                order.setdefault(key, tie)
        complete = [k for k, v in totals.items() if len(v) == len(records)]
        calibrated[method] = min(complete, key=lambda k: (-float(np.mean(totals[k])), order[k]))
    log_ratio, tc, et = [], [], []
    for record in records:
        reference, before = record["reference_ml"], record["before"]["volume_ml"]
        if reference["WT"] > 0:
            tc.append(reference["TC"] / reference["WT"])
            et.append(reference["ET"] / reference["WT"])
            if before["WT"] > 0:
                log_ratio.append(math.log(reference["WT"] / before["WT"]))
    fvus = [r["fvu"] for r in records if r.get("fvu") is not None]
    return {
        "calibrated": calibrated,
        "cases": len(records),
        "tto": {"log_wt_ratio": _median(log_ratio), "tc_fraction": _median(tc), "et_fraction": _median(et)},
        "fvu_threshold": float(np.quantile(fvus, FVU_QUANTILE)) if fvus else None,
    }


def tto_distance(out: dict, before: dict, target: dict) -> float:
    now, then = _composition(out), _composition(before)
    if now is None or then is None or target["log_wt_ratio"] is None:
        return math.inf
    return (
        abs(math.log(now[0] / then[0]) - target["log_wt_ratio"])
        + abs(now[1] - target["tc_fraction"])
        + abs(now[2] - target["et_fraction"])
    )


def choose(record: dict, method: str, selection: str, fitted: dict, regions=("WT", "TC", "ET")) -> tuple[str, dict]:
    """(key, outcome) that `selection` picks for `record`. Only `oracle` reads the case's Dice."""
    found = options(record, method)
    if selection == "oracle":
        key, out, _ = min(found, key=lambda o: (-case_score(o[1], regions), o[2]))
        return key, out
    if selection in ("calibrated", "gated-calibrated"):
        key = fitted["calibrated"].get(method, NONE)
        threshold = fitted.get("fvu_threshold")
        if selection == "gated-calibrated" and threshold is not None and (record.get("fvu") or 0.0) > threshold:
            key = NONE
        return next(((k, o) for k, o, _ in found if k == key), (NONE, record["before"]))
    if selection == "tto":
        before = record["before"]
        key, out, _ = min(found, key=lambda o: (tto_distance(o[1], before, fitted["tto"]), o[2]))
        return key, out
    raise ValueError(f"unknown selection {selection!r}")


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None
