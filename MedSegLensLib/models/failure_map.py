"""The baseline failure map: how each architecture's Dice falls per population, as a table and a figure.

Input: for each architecture, the per-case rows of `evaluate_model`. Output: a
Markdown table (mean ± std Dice per region and population, failures), a PNG of
the per-case Dice distributions, and the list of failure cases.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..fileio import atomic_path
from .evaluation import FAILURE_DICE, FALSE_POSITIVE_ML, REGIONS, failure_cases, summarise_by_population

POPULATION_ORDER = ("adult", "pediatric", "ssa", "healthy")


def ordered_populations(rows: Sequence[dict]) -> list[str]:
    present = {r["population"] for r in rows}
    return [p for p in POPULATION_ORDER if p in present] + sorted(present - set(POPULATION_ORDER))


def markdown_table(results: Mapping[str, Sequence[dict]], failure_dice: float = FAILURE_DICE) -> str:
    """One row per (architecture, population): n, Dice mean ± std per region, failures (any region < threshold),
    and the median predicted tumour volume (for healthy cases: the false-positive volume)."""
    header = [
        "architecture",
        "population",
        "n",
        *[f"{r} Dice" for r in REGIONS],
        f"failures (Dice < {failure_dice:g}; no tumour: > {FALSE_POSITIVE_ML:g} ml)",
        "median predicted / reference volume (ml)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arch, rows in results.items():
        for population in ordered_populations(rows):
            subset = [r for r in rows if r["population"] == population]
            summary = {
                s["region"]: s for s in summarise_by_population(subset, failure_dice) if s["population"] == population
            }
            failed = len(failure_cases(subset, failure_dice))
            cells = [arch, population, str(len(subset))]
            cells += [f"{summary[r]['dice_mean']:.3f} ± {summary[r]['dice_std']:.3f}" for r in REGIONS]
            cells.append(f"{failed}/{len(subset)}")
            predicted = np.median([r["pred_volume_ml"] for r in subset])
            cells.append(f"{predicted:.1f} / {np.median([r['ref_volume_ml'] for r in subset]):.1f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def failure_rows(results: Mapping[str, Sequence[dict]], failure_dice: float = FAILURE_DICE) -> list[dict]:
    """Every failure case of every architecture, labelled with the architecture."""
    return [
        {"architecture": arch, **row} for arch, rows in results.items() for row in failure_cases(rows, failure_dice)
    ]


def plot_failure_map(
    results: Mapping[str, Sequence[dict]], path: str | os.PathLike, failure_dice: float = FAILURE_DICE
) -> Path:
    """Per-case Dice by population (one panel per region, one box per architecture), with the failure line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = list(results)
    populations = ordered_populations([r for rows in results.values() for r in rows])
    colours = plt.get_cmap("tab10")
    figure, axes = plt.subplots(1, len(REGIONS), figsize=(4.2 * len(REGIONS), 3.8), sharey=True)
    width = 0.8 / max(1, len(archs))
    rng = np.random.default_rng(0)  # jitter of the dots only
    for axis, region in zip(np.atleast_1d(axes), REGIONS):
        for a, arch in enumerate(archs):
            offsets = np.arange(len(populations)) + (a - (len(archs) - 1) / 2) * width
            values = [[r[f"dice_{region}"] for r in results[arch] if r["population"] == p] for p in populations]
            boxes = axis.boxplot(values, positions=offsets, widths=width * 0.8, patch_artist=True, showfliers=False)
            for box in boxes["boxes"]:
                box.set(facecolor=colours(a), alpha=0.35)
            for x, v in zip(offsets, values):
                axis.scatter(x + rng.uniform(-width / 4, width / 4, len(v)), v, s=8, color=colours(a), zorder=3)
            axis.plot([], [], color=colours(a), lw=6, alpha=0.5, label=arch)
        axis.axhline(failure_dice, color="crimson", lw=1, ls="--")
        axis.set_xticks(range(len(populations)), populations)
        axis.set_title(f"{region} Dice")
        axis.set_ylim(-0.03, 1.03)
    np.atleast_1d(axes)[0].set_ylabel("Dice per case")
    np.atleast_1d(axes)[0].legend(loc="lower left", fontsize=8)
    figure.suptitle(f"Adult-trained backbones on held-out populations (dashed: failure threshold {failure_dice:g})")
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)
    return path
