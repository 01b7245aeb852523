"""A PNG contact sheet of a cohort: one row per case, each modality plus the labels.

Each row cuts through the tumour's centre (the brain's centre for healthy
cases): the four modalities axially, then FLAIR with the label overlay axially
and coronally, so a person can judge at a glance whether the scans look real.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.case import MODALITIES
from ..fileio import atomic_path
from .generator import SyntheticCase

LABEL_COLOURS = {1: (0.9, 0.1, 0.1), 2: (0.1, 0.8, 0.2), 3: (1.0, 0.85, 0.0)}  # NCR red, ED green, ET yellow
TITLES = {"t1n": "T1", "t1c": "T1c", "t2w": "T2", "t2f": "FLAIR"}


def write_montage(cases: list[SyntheticCase], path: str | os.PathLike) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    columns = len(MODALITIES) + 2
    figure, axes = plt.subplots(len(cases), columns, figsize=(2.2 * columns, 2.4 * len(cases) + 0.4), squeeze=False)
    for row, case in zip(axes, cases):
        _, y, z = _centre(case)
        for axis, name in zip(row, MODALITIES):
            axis.imshow(_window(case.images[name])[:, :, z].T, cmap="gray", origin="lower", vmin=0, vmax=1)
            axis.set_title(TITLES[name], fontsize=8)
        flair = _window(case.images["t2f"])
        for axis, cut in ((row[-2], (slice(None), slice(None), z)), (row[-1], (slice(None), y, slice(None)))):
            axis.imshow(flair[cut].T, cmap="gray", origin="lower", vmin=0, vmax=1)
            axis.imshow(np.transpose(_overlay(case.label[cut]), (1, 0, 2)), origin="lower")
        row[-2].set_title("labels (axial)", fontsize=8)
        row[-1].set_title("labels (coronal)", fontsize=8)
        volume = case.info.get("volume_cc", {}).get("WT", 0.0)
        row[0].set_ylabel(f"{case.case_id}\nWT {volume:.0f} cc", fontsize=7)
        for axis in row:
            axis.set_xticks([])
            axis.set_yticks([])
    legend = [Patch(color=LABEL_COLOURS[v], label=n) for v, n in ((1, "NCR"), (2, "ED"), (3, "ET"))]
    figure.legend(handles=legend, loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=90)
    plt.close(figure)
    return path


def _centre(case: SyntheticCase) -> tuple[int, int, int]:
    mask = case.label > 0 if case.label.any() else case.tissue > 0
    return tuple(int(round(c)) for c in np.argwhere(mask).mean(axis=0))


def _window(image: np.ndarray) -> np.ndarray:
    inside = image[image > 0]
    low, high = np.percentile(inside, (0.5, 99.5)) if inside.size else (0.0, 1.0)
    return np.clip((image - low) / max(high - low, 1e-6), 0, 1) * (image > 0)


def _overlay(label: np.ndarray) -> np.ndarray:
    rgba = np.zeros(label.shape + (4,), dtype=np.float32)
    for value, colour in LABEL_COLOURS.items():
        rgba[label == value] = (*colour, 0.45)
    return rgba
