"""The study's figures: per-case Dice changes, recovered fractions, dose-response curves (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...report import Figure
from .selection import SELECTIONS, methods_of
from .settings import StudySettings

DOSE_GROUPS = (("population-specific", "C3"), ("shared", "C0"), ("random", "C7"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, folder: Path, name: str, caption: str, source: str) -> Figure:
    fig.tight_layout()
    fig.savefig(folder / name, dpi=110)
    _pyplot().close(fig)
    return Figure(name, caption, source)


def delta_figure(
    folder: Path, rows: list[dict], methods: list[str], populations: list[str], settings: StudySettings
) -> Figure:
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(populations),
        1,
        squeeze=False,
        figsize=(max(8, 1.1 * len(methods) * len(SELECTIONS)), 3.6 * len(populations)),
    )
    for ax, population in zip(axes[:, 0], populations):
        labels, data = [], []
        for selection in SELECTIONS:
            for method in methods:
                group = [
                    r
                    for r in rows
                    if r["population"] == population and r["method"] == method and r["selection"] == selection
                ]
                if group:
                    region = group[0]["region"]
                    data.append([r[f"after_{region}"] - r[f"before_{region}"] for r in group])
                    labels.append(f"{method}\n{selection}")
        ax.boxplot(data, showfliers=False)
        for i, values in enumerate(data, start=1):
            ax.scatter(np.random.default_rng(i).normal(i, 0.06, len(values)), values, s=4, alpha=0.4)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=6, rotation=90)
        ax.set_ylabel(f"Δ Dice ({settings.failure_region(population)})")
        ax.set_title(f"{population}: per-case change of the failure-region Dice, all test cases")
    return _save(
        fig,
        folder,
        "delta_dice.png",
        "Per-case change of the failure-region Dice by method and selection (boxes: quartiles; dots: cases)",
        "tables/per_case.csv",
    )


def recovery_figure(folder: Path, summary: list[dict], populations: list[str]) -> Figure:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(populations), figsize=(6 * len(populations), 4), squeeze=False)
    for ax, population in zip(axes[0], populations):
        group = [s for s in summary if s["population"] == population]
        rate = np.array([s["recovered_rate"] for s in group])
        # Wilson bounds can sit a rounding error beyond the rate (e.g. 0 recovered): matplotlib refuses negative errors.
        err = np.clip(
            np.array([[r - s["recovered_ci_low"], s["recovered_ci_high"] - r] for r, s in zip(rate, group)]).T,
            0.0,
            None,
        )
        ax.bar(
            range(len(group)),
            rate,
            yerr=err,
            capsize=2,
            color=["C0" if s["selection"] == "oracle" else "C1" for s in group],
        )
        ax.set_xticks(range(len(group)), [f"{s['method']}\n{s['selection']}" for s in group], fontsize=6, rotation=90)
        ax.set_ylim(0, 1)
        ax.set_ylabel("failures recovered (95 % Wilson)")
        ax.set_title(f"{population} ({group[0]['failures']} failures, {group[0]['region']})" if group else population)
    return _save(
        fig,
        folder,
        "recovered.png",
        "Fraction of failures whose failure-region Dice rose above the threshold (blue: oracle, orange: label-free)",
        "tables/summary.csv",
    )


def dose_figure(folder: Path, test: list[dict], populations: list[str], settings: StudySettings) -> Figure | None:
    dose = [(r["population"], r["failure_region"], d) for r in test for d in r.get("dose", [])]
    if not dose:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(populations), figsize=(5.5 * len(populations), 4), squeeze=False)
    for ax, population in zip(axes[0], populations):
        baseline = [
            r["before"]["dice"][r["failure_region"]] for r in test if r["population"] == population and r.get("dose")
        ]
        for group_name, colour in DOSE_GROUPS:
            points = [
                (d["alpha"], d["dice"][region]) for p, region, d in dose if p == population and d["group"] == group_name
            ]
            if not points:
                continue
            alphas = sorted({a for a, _ in points} | {0.0})
            values = [baseline if alpha == 0.0 else [v for a, v in points if a == alpha] for alpha in alphas]
            means = np.array([np.mean(v) for v in values])
            sems = np.array([np.std(v) / np.sqrt(max(1, len(v))) for v in values])
            ax.plot(alphas, means, "-o", color=colour, label=group_name, ms=3)
            ax.fill_between(alphas, means - sems, means + sems, color=colour, alpha=0.15)
        ax.set_xlabel("additive strength α (× typical activation; + = towards adult use)")
        ax.set_ylabel(f"Dice ({settings.failure_region(population)})")
        ax.set_title(f"{population}: dose-response on failure cases")
        ax.legend(fontsize=7)
    return _save(
        fig,
        folder,
        "dose_response.png",
        "Failure-region Dice against strength for single latents: "
        "population-specific, shared and random (mean ± s.e.m. over cases and latents)",
        "cases/test/*/*.json (dose)",
    )


def study_figures(
    folder: Path,
    rows: list[dict],
    summary: list[dict],
    test: list[dict],
    populations: list[str],
    settings: StudySettings,
) -> list[Figure]:
    figures = [
        delta_figure(folder, rows, methods_of(test), populations, settings),
        recovery_figure(folder, summary, populations),
        dose_figure(folder, test, populations, settings),
    ]
    return [f for f in figures if f is not None]
