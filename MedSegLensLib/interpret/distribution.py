"""How a dictionary's active latents spread over the categories, per architecture (the paper's Figures 2-3)."""

from __future__ import annotations

import os
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..fileio import atomic_path  # noqa: E402
from .categories import CATEGORIES  # noqa: E402


def category_counts(records: list[dict]) -> dict[str, int]:
    """Active latents per category (inactive latents are not counted)."""
    counts = {category: 0 for category in CATEGORIES}
    for record in records:
        if record["active"]:
            counts[record["category"]] += 1
    return counts


def plot_distribution(distributions: dict[str, dict[str, int]], path: str | os.PathLike, source: str) -> None:
    """Grouped bars: share of active latents per category, one colour per run (e.g. architecture)."""
    names = list(distributions)
    fig, ax = plt.subplots(figsize=(max(10.0, 1.0 * len(CATEGORIES)), 4.8))  # about an inch per category
    x = np.arange(len(CATEGORIES))
    width = 0.8 / max(1, len(names))
    for slot, name in enumerate(names):
        counts = np.array([distributions[name].get(c, 0) for c in CATEGORIES], dtype=float)
        total = counts.sum()
        shares = counts / total if total else counts
        bars = ax.bar(
            x + (slot - (len(names) - 1) / 2) * width, 100 * shares, width, label=f"{name} ({int(total)} active)"
        )
        for bar, count in zip(bars, counts):
            ax.annotate(
                f"{int(count)}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(x, [textwrap.fill(c, 11) for c in CATEGORIES], fontsize=8)
    ax.set_ylabel("% of active latents")
    ax.set_title("Categories of active SAE latents (numbers on bars: latent counts)")
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, textwrap.fill(f"Data: {source}", 190), fontsize=6.5, va="bottom")
    fig.subplots_adjust(bottom=0.24)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
