"""PNG figures of the diffing results; every figure carries a footer naming the data that made it."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from ..fileio import atomic_path
from .architectures import ArchDiffResult
from .dictionaries import DictionaryComparison
from .populations import PopulationDiff
from .swap import SwapResult

CATEGORY_COLOURS = {"shared": "#4477aa", "specific": "#cc3311", "inconclusive": "#bbbbbb", "absent": "#eeeeee"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, data: str) -> Path:
    """Write the figure with a footer naming its data, below the plots (the canvas grows to hold it)."""
    width = max(60, int(fig.get_figwidth() * 20))  # about 20 characters of 6.5 pt text per inch
    fig.text(
        0.01, 0.0, "\n".join(textwrap.wrap(f"Data: {data}", width)), fontsize=6.5, color="#555555", va="top", ha="left"
    )
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")
    _pyplot().close(fig)
    return path


def backbone_figure(diff: PopulationDiff, path: Path, data: str) -> Path:
    """Latent counts per category, and per population how many are enriched / depleted."""
    plt = _pyplot()
    summary = diff.backbone_summary()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1, 1.6]})
    names = ["shared", "specific", "inconclusive", "absent"]
    counts = [summary[n] for n in names]
    left.bar(names, counts, color=[CATEGORY_COLOURS[n] for n in names], edgecolor="#444444")
    for x, c in enumerate(counts):
        left.text(x, c, str(c), ha="center", va="bottom", fontsize=8)
    left.set_ylabel("latents")
    left.set_title(f"Pooled SAE: {summary['latents']} latents")
    pops = diff.populations
    per = summary["per_population"]
    x = np.arange(len(pops))
    right.bar(
        x - 0.2, [per[p]["enriched"] for p in pops], 0.4, label="enriched (specific to population)", color="#cc3311"
    )
    right.bar(
        x + 0.2, [per[p]["depleted"] for p in pops], 0.4, label="depleted (missing in population)", color="#ee7733"
    )
    right.set_xticks(x, pops)
    right.set_ylabel(f"latents (BH q < {diff.settings.alpha:.2g}, fold >= {diff.settings.ratio:.3g})")
    right.set_title("Population-specific latents (each population vs the rest)")
    right.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path, data)


def volcano_figure(diff: PopulationDiff, path: Path, data: str) -> Path:
    """Per population: standardised log-ratio of firing frequency against its precision (LR / bootstrap SE)."""
    plt = _pyplot()
    pops = diff.populations
    cols = min(len(pops), 4)
    rows = math.ceil(len(pops) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows + 0.4), squeeze=False)
    log_tau = math.log(diff.settings.ratio)
    for ax, p in zip(axes.ravel(), pops):
        c = diff.contrasts[p]
        ok = c.comparable & (diff.category != "absent")
        z = np.abs(c.log_ratio) / np.maximum(c.se, 1e-6)
        called = np.array([p in e or p in d for e, d in zip(diff.enriched_in, diff.depleted_in)])
        for name, mask in (
            ("inconclusive", diff.category == "inconclusive"),
            ("shared", diff.category == "shared"),
            ("specific elsewhere", (diff.category == "specific") & ~called),
            (f"specific ({p})", called),
        ):
            m = ok & mask
            colour = CATEGORY_COLOURS["specific" if "specific" in name else name]
            ax.scatter(
                c.log_ratio[m],
                np.minimum(z[m], 40),
                s=7 if "(" in name else 4,
                color=colour,
                label=name,
                alpha=0.9 if "(" in name else 0.45,
                marker="o" if "elsewhere" not in name else "x",
            )
        for v in (-log_tau, log_tau):
            ax.axvline(v, color="#888888", lw=0.7, ls="--")
        ax.set_title(f"{p} vs rest ({c.n_cases} vs {c.n_rest_cases} cases)", fontsize=9)
        ax.set_xlabel("log frequency ratio (matched strata)", fontsize=8)
        ax.set_ylabel("|log ratio| / bootstrap SE (capped at 40)", fontsize=8)
        ax.legend(fontsize=6, markerscale=1.5, loc="upper center")
    for ax in axes.ravel()[len(pops) :]:
        ax.axis("off")
    fig.suptitle(
        f"Calls: BH q < {diff.settings.alpha:g} that the fold change exceeds {diff.settings.ratio:g} (dashed lines)",
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, path, data)


def specific_heatmap(
    diff: PopulationDiff,
    stratum_frequency: dict[str, np.ndarray],
    strata: tuple[str, ...],
    latents: list[int],
    path: Path,
    data: str,
    names: dict[int, str] | None = None,
) -> Path:
    """Firing frequency per population and stratum for the given (most specific) latents; grey = no rows."""
    plt = _pyplot()
    pops = diff.populations
    used = [s for s in range(len(strata)) if any(not np.all(np.isnan(stratum_frequency[p][s])) for p in pops)]
    columns = [(p, s) for p in pops for s in used]
    rows = latents or [0]
    matrix = np.array([[stratum_frequency[p][s, j] for p, s in columns] for j in rows])
    fig, ax = plt.subplots(figsize=(min(18, 3 + 0.32 * len(columns)), 1.8 + 0.28 * len(rows)))
    cmap = plt.get_cmap("magma").with_extremes(bad="#cccccc")
    image = ax.imshow(
        np.ma.masked_invalid(matrix if latents else np.full_like(matrix, np.nan)), aspect="auto", cmap=cmap, vmin=0
    )
    ax.set_xticks(range(len(columns)), [f"{p}:{strata[s]}" for p, s in columns], rotation=90, fontsize=7)
    ax.set_yticks(
        range(len(rows)),
        [f"{j} {(names or {}).get(j, '')[:40]}".strip() for j in rows] if latents else ["no specific latents"],
        fontsize=7,
    )
    ax.set_title("Firing frequency per population and stratum of the most specific latents (grey: no rows)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.02, label="frequency")
    fig.tight_layout()
    return _save(fig, path, data)


def matching_figure(comparison: DictionaryComparison, path: Path, data: str) -> Path:
    """Histogram of matched decoder cosines, beside the chance level (B randomly rotated)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    bins = np.linspace(-0.2, 1.0, 61)
    ax.hist(comparison.matching.similarity, bins=bins, color="#4477aa", alpha=0.85, label="matched pairs")
    ax.hist(comparison.chance.similarity, bins=bins, histtype="step", color="#222222", label="chance (B rotated)")
    ax.axvline(comparison.threshold, color="#cc3311", ls="--", label=f"threshold {comparison.threshold:g}")
    s = comparison.summary()
    ax.set_title(
        f"Decoder cosine of matched latents: {s['matched_above_threshold']} of {s['alive_a']} / {s['alive_b']} matched",
        fontsize=9,
    )
    ax.set_xlabel("decoder cosine (optimal assignment)")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path, data)


def swap_figure(swaps: dict[str, SwapResult], threshold: float, min_fired: int, path: Path, data: str) -> Path:
    """Paper Figure 4 analogue: does a latent survive decoding with the other SAE? Shared vs non-shared."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(swaps), figsize=(5.2 * len(swaps), 4), squeeze=False)
    for ax, (title, swap) in zip(axes[0], swaps.items()):
        used = swap.fired >= min_fired
        shared = used & (np.nan_to_num(swap.partner_similarity, nan=-1) >= threshold)
        other = used & ~shared
        groups = [
            np.nan_to_num(swap.correlation[shared], nan=0),
            np.nan_to_num(swap.correlation[other], nan=0),
            np.nan_to_num(swap.spatial_correlation[shared], nan=0),
            np.nan_to_num(swap.spatial_correlation[other], nan=0),
        ]
        ax.boxplot([g if g.size else np.zeros(1) for g in groups], showfliers=False)
        for x, g in enumerate(groups, start=1):
            if g.size:
                ax.scatter(
                    np.full(g.size, x) + np.random.default_rng(x).uniform(-0.15, 0.15, g.size),
                    g,
                    s=3,
                    color="#333333",
                    alpha=0.35,
                )
        ax.set_xticks(
            [1, 2, 3, 4],
            [f"shared\n(n={shared.sum()})", f"not shared\n(n={other.sum()})", "shared\nspatial", "not shared\nspatial"],
            fontsize=8,
        )
        ax.set_ylim(-0.3, 1.02)
        ax.set_ylabel("r(original code, code after swap)")
        ax.set_title(f"{title}: FVU own {swap.fvu_own:.3f}, swapped {swap.fvu_swap:.3f}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path, data)


def architecture_figure(result: ArchDiffResult, path: Path, data: str) -> Path:
    """Matched correlations of the real data against the block-permutation null."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sims = result.matching.similarity
    top = max(
        float(sims.max()) if sims.size else 0.1, float(result.null_matched.max()) if result.null_matched.size else 0.1
    )
    bins = np.linspace(min(-0.05, float(sims.min()) if sims.size else 0), top + 0.02, 50)
    ax.hist(
        result.null_matched.ravel(),
        bins=bins,
        density=True,
        color="#bbbbbb",
        label=f"null ({result.settings.n_permutations} block permutations)",
    )
    ax.hist(sims, bins=bins, density=True, histtype="step", lw=1.5, color="#4477aa", label="matched pairs")
    ax.axvline(result.fwer_threshold, color="#cc3311", ls="--", label=f"FWER {result.settings.alpha:g} threshold")
    ax.set_xlabel("activation correlation of matched latents (common grid, stratified voxels)")
    ax.set_ylabel("density")
    ax.set_title(
        f"{int(result.significant().sum())} of {sims.size} pairs significant (BH q < {result.settings.alpha:g})",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path, data)
