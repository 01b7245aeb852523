"""Held-out evaluation of every triage score: the AUROC/AUPRC table, the paired comparison, the cost per case.

    summary = evaluate_scores(test_records, reference, replicates=2000, seed=7)
    print(markdown_table(summary))

Groups: all test cases pooled, then each population. "known_population" (the
calibration failure rate of the case's population) is a baseline only for the
pooled group: within a population it is a constant and has no ranking ("n/a").
The primary comparison is SAE risk minus the best baseline of the group (the
one with the highest held-out AUROC: the comparison the SAE can least win).

Cost per case: the SAE risk needs the capture pass (the forward pass with the
layer hooked and stitched) and the SAE; the baselines need a plain forward
pass, timed as one third of the three flipped passes of the TTA baseline in
the same run, plus their own work (softmax statistics, flips).
"""

from __future__ import annotations

import numpy as np

from .reference import BASELINES, SCORES, Reference
from .stats import auprc, auroc, bootstrap, paired_auroc_difference, stratified_resamples

POOLED = "pooled"
POOLED_ONLY = ("known_population",)


def seconds_per_score(record: dict) -> dict[str, float]:
    """Seconds each score costs on this case (the shared forward pass counted in each)."""
    s = record["seconds"]
    forward = s.get("tta", 0.0) / 3 if "tta" in s else s["capture"]
    return {
        "sae_risk": s["capture"] + s["sae"],
        "entropy": forward + s["softmax"],
        "max_prob": forward + s["softmax"],
        "tta_volume_cv": forward + s.get("tta", float("nan")),
        "volume_outlier": forward,
        "known_population": 0.0,
    }


def _group(records: list[dict], reference: Reference, name: str, replicates: int, seed: int) -> dict:
    failed = [bool(r["failure"]) for r in records]
    strata = [f"{r['population']}:{r['failure']}" for r in records]
    resamples = stratified_resamples(strata, replicates, seed)
    scored = [reference.scores(r) for r in records]
    names = [s for s in SCORES if name == POOLED or s not in POOLED_ONLY]
    rows = {}
    for score in names:
        values = [s[score] for s in scored]
        rows[score] = {
            "auroc": bootstrap(auroc, values, failed, resamples),
            "auprc": bootstrap(auprc, values, failed, resamples),
        }
    baselines = [b for b in BASELINES if b in names and rows[b]["auroc"][0] is not None]
    comparisons = {}
    for baseline in baselines:
        comparisons[baseline] = paired_auroc_difference(
            [s["sae_risk"] for s in scored], [s[baseline] for s in scored], failed, resamples
        )
    best = max(baselines, key=lambda b: rows[b]["auroc"][0]) if baselines else None
    return {
        "n": len(records),
        "failures": int(sum(failed)),
        "scores": rows,
        "differences": comparisons,
        "best_baseline": best,
        "primary": comparisons.get(best) if best else None,
    }


def evaluate_scores(records: list[dict], reference: Reference, replicates: int, seed: int) -> dict:
    """Per group (pooled, each population): AUROC/AUPRC with intervals, SAE - baseline differences; cost."""
    populations = sorted({r["population"] for r in records})
    groups = {POOLED: records, **{p: [r for r in records if r["population"] == p] for p in populations}}
    costs = [seconds_per_score(r) for r in records]
    return {
        "groups": {name: _group(rows, reference, name, replicates, seed) for name, rows in groups.items()},
        "seconds_per_case": {s: float(np.median([c[s] for c in costs])) for s in SCORES} if costs else {},
        "replicates": replicates,
        "seed": seed,
    }


def _cell(triple) -> str:
    value, low, high = triple
    return "n/a" if value is None else f"{value:.2f} [{low:.2f}, {high:.2f}]"


def _signed(triple) -> str:
    value, low, high = triple
    return "n/a" if value is None else f"{value:+.2f} [{low:+.2f}, {high:+.2f}]"


def markdown_table(summary: dict) -> str:
    """One row per (group, score): AUROC and AUPRC with 95 % intervals, SAE - score AUROC, seconds per case."""
    lines = [
        "| group | n (failures) | score | AUROC [95 % CI] | AUPRC [95 % CI] | AUROC SAE − score [95 % CI] | s/case |",
        "|---|---|---|---|---|---|---|",
    ]
    seconds = summary["seconds_per_case"]
    for name, group in summary["groups"].items():
        for score, row in group["scores"].items():
            difference = group["differences"].get(score)
            marker = " (best baseline)" if score == group["best_baseline"] else ""
            lines.append(
                f"| {name} | {group['n']} ({group['failures']}) | {score}{marker} | {_cell(row['auroc'])} | "
                f"{_cell(row['auprc'])} | {'' if score == 'sae_risk' else _signed(difference or (None,) * 3)} | "
                f"{seconds.get(score, float('nan')):.2f} |"
            )
    lines.append("")
    lines.append("Primary comparison (AUROC of SAE risk − best baseline of the group, paired bootstrap):")
    for name, group in summary["groups"].items():
        best = group["best_baseline"]
        verdict = "n/a (one class only)" if best is None else f"vs {best}: {_signed(group['primary'])}"
        lines.append(f"- {name}: {verdict}")
    return "\n".join(lines) + "\n"
