"""Category distributions of several interpretation runs side by side (e.g. U-Net vs SegFormer)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import InputError
from ..fileio import atomic_directory
from ..report import Figure, Section, Table, write_section
from .categories import CATEGORIES
from .distribution import plot_distribution
from .tables import FORMAT


def read_latents_document(run: str | os.PathLike) -> dict:
    path = Path(run) / "latents.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{path}: cannot read an interpretation run ({' '.join(str(exc).split())[:100]}); "
            f"give folders written by `medseglens interpret`"
        ) from None
    if document.get("format") != FORMAT:
        raise InputError(f"{path}: not a {FORMAT} file; give folders written by `medseglens interpret`")
    return document


def run_name(document: dict) -> str:
    """A label for a run: its model's architecture and the SAE's layer."""
    model, sae = document.get("model", {}), document.get("sae", {})
    return " ".join(p for p in (model.get("architecture", ""), sae.get("layer", "")) if p) or "run"


def compare_runs(
    runs: list[str | os.PathLike],
    out: str | os.PathLike,
    names: list[str] | None = None,
    overwrite: bool = False,
    command: str = "",
) -> Path:
    """Write `categories.png` and a report section comparing the runs' category distributions."""
    documents = [read_latents_document(run) for run in runs]
    if names and len(names) != len(runs):
        raise InputError(f"{len(names)} names for {len(runs)} runs; give one name per run or none")
    labels = names or [run_name(d) for d in documents]
    if len(set(labels)) != len(labels):
        labels = [f"{label} ({Path(run).name})" for label, run in zip(labels, runs)]
    source = "; ".join(
        f"{label}: {Path(run) / 'latents.json'} ({d['cases']} cases)" for label, run, d in zip(labels, runs, documents)
    )
    distributions = {label: d["category_counts"] for label, d in zip(labels, documents)}
    rows = []
    for category in CATEGORIES:
        row = [category]
        for label in labels:
            counts = distributions[label]
            total = sum(counts.values())
            row += [counts.get(category, 0), round(100 * counts.get(category, 0) / total, 1) if total else 0.0]
        rows.append(row)
    columns = ["category"] + [f"{label} {what}" for label in labels for what in ("latents", "%")]
    with atomic_directory(out, overwrite=overwrite) as tmp:
        plot_distribution(distributions, tmp / "categories.png", source)
        section = Section(
            "interpret-compare",
            "Latent categories per architecture",
            [f"Active latents per category for {', '.join(labels)} (inactive latents not counted)."],
            [Table("Active latents per category", columns, rows, source)],
            [Figure("categories.png", "Share of active latents per category and run", source)],
            command,
        )
        write_section(section, tmp)
    return Path(out)
