"""Latent cards: one PNG per latent with its top-activating slices and its scores.

Each column is one of the cases where the latent peaks highest, cut axially
where its activation mass inside the brain is largest: the MRI with the ground-truth
outlines (NCR, ED, ET), and the same slice with the latent's activation inside the
brain as a heatmap (the nearest-neighbour map the scores were computed on).
Activation outside the brain (air, padding, the volume's edge) is not what a
latent means, so it is not drawn and not used to pick the slice; its share of the
case's activation is printed instead. Images are in neurological orientation (the
patient's left on the left, anterior up).
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..data import MODALITIES, Case  # noqa: E402
from ..fileio import atomic_path  # noqa: E402
from .evidence import LayerCodes  # noqa: E402

OUTLINE_COLOURS = {1: "#ff3b30", 2: "#34c759", 3: "#ffd60a"}  # NCR red, ED green, ET yellow
MODALITY_FOR_TARGET = {"ET": "t1c", "NCR": "t1c"}  # enhancement shows on T1c; the rest on FLAIR
MODALITY_NAMES = {"t1n": "T1", "t1c": "T1c", "t2w": "T2", "t2f": "FLAIR"}


@dataclass
class Panel:
    """One case's axial slice where the latent's activation mass is largest."""

    case_id: str
    population: str
    slice_index: int
    mri: np.ndarray
    label: np.ndarray
    heat: np.ndarray  # inside the brain only
    peak: float  # largest activation inside the brain
    outside_share: float  # of the case's activation mass, outside the brain


def card_panel(case: Case, codes: LayerCodes, latent: int, modality: str, brain: np.ndarray) -> Panel:
    """The axial slice with the most activation inside `brain` (the slice with the most brain if none)."""
    full = codes.image_map(latent, case.grid).astype(np.float64)
    heat = np.where(brain, full, 0.0)
    per_slice = heat.sum(axis=(0, 1))
    z = int(np.argmax(per_slice if per_slice.any() else brain.sum(axis=(0, 1))))
    total = float(full.sum())
    outside = (total - float(heat.sum())) / total if total > 0 else 0.0
    label = case.label if case.label is not None else np.zeros(case.shape, np.uint8)
    return Panel(
        case.case_id,
        case.population,
        z,
        case.image[MODALITIES.index(modality)][:, :, z],
        label[:, :, z],
        heat[:, :, z],
        float(heat.max()),
        outside,
    )


def modality_for(record: dict) -> str:
    return MODALITY_FOR_TARGET.get(record.get("target") or "", "t2f")


def _score_lines(record: dict) -> list[str]:
    lines = []
    for s in record["top_scores"]:
        lines.append(
            f"{s['target']:>10}: AUROC {s['auroc']:.3f} (±{s['auroc_error']:.3f})  Dice {s['dice']:.3f} "
            f"(+{s['dice_error']:.3f})  IoU {s['iou']:.3f}  precision {s['precision']:.3f}  "
            f"recall {s['recall']:.3f}  kappa {s['kappa']:.3f}"
        )
    return lines


def render_card(record: dict, panels: list[Panel], path: str | os.PathLike, source: str) -> None:
    """Write the card PNG of one latent; `source` says which model, SAE and cases made it."""
    columns = max(1, len(panels))
    width = max(8.5, 3.0 * columns)
    fig, axes = plt.subplots(
        2,
        columns,
        figsize=(width, 6.8),
        squeeze=False,
        gridspec_kw={"bottom": 0.19, "top": 0.83, "hspace": 0.14, "wspace": 0.04},
    )
    modality = MODALITY_NAMES[modality_for(record)]
    for column in range(columns):
        top, bottom = axes[0, column], axes[1, column]
        for ax in (top, bottom):
            ax.set_axis_off()
        if column >= len(panels):
            continue
        panel = panels[column]
        mri = panel.mri.T
        vmax = np.percentile(mri[mri > 0], 99.5) if (mri > 0).any() else 1.0
        for ax in (top, bottom):
            ax.imshow(mri, cmap="gray", origin="lower", vmin=0, vmax=vmax, interpolation="nearest")
        for value, colour in OUTLINE_COLOURS.items():
            mask = (panel.label.T == value).astype(float)
            if mask.any() and not mask.all():
                top.contour(mask, levels=[0.5], colors=colour, linewidths=0.9)
        heat = np.ma.masked_less_equal(panel.heat.T, 0)
        bottom.imshow(
            heat,
            cmap="inferno",
            origin="lower",
            alpha=0.75,
            vmin=0,
            vmax=max(panel.peak, 1e-12),
            interpolation="nearest",
        )
        whole = (panel.label.T > 0).astype(float)
        if whole.any() and not whole.all():
            bottom.contour(whole, levels=[0.5], colors="#00c8ff", linewidths=0.7)
        outside = f"\n{100 * panel.outside_share:.0f} % outside head, not shown" if panel.outside_share >= 0.005 else ""
        top.set_title(f"{panel.case_id}\n{panel.population}, axial {panel.slice_index}{outside}", fontsize=8)
        bottom.set_title(f"activation (peak {panel.peak:.3g})", fontsize=8)
    fig.suptitle(
        f"Latent {record['index']}: {record['category']} "
        f"(confidence {record['confidence']:.2f}, {record['confidence_level']})",
        fontsize=11,
        y=0.985,
    )
    fig.text(
        0.01,
        0.93,
        f"top rows: {modality} with ground truth (NCR red, ED green, ET yellow); "
        "bottom rows: activation inside the brain, whole-tumour outline cyan",
        fontsize=7,
    )
    chars = int(width * 17)
    text = [textwrap.fill(record["description"], chars), *_score_lines(record), textwrap.fill(f"Data: {source}", chars)]
    fig.text(0.01, 0.02, "\n".join(text), fontsize=6.5, family="monospace", va="bottom", wrap=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
