#!/usr/bin/env python3
"""Print the figures of docs/interpret.md from finished interpretation runs (their latents.json only).

    python bench/interpret_summary.py RUN_DIR [RUN_DIR ...]

Per run: active latents, and per category the latent count, confidence levels, and in how
many of each population's cases its latents fire (median over the category's latents).
Then, among background/other latents: how many match the background, and how many fire
selectively on a small part of their best target (precision >= 0.5, recall < 0.1 at the
best-Dice threshold): split features that the kappa and AUROC gates do not name.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from MedSegLensLib.interpret import CATEGORIES  # noqa: E402
from MedSegLensLib.interpret.compare import read_latents_document, run_name  # noqa: E402

SELECTIVE_PRECISION, PARTIAL_RECALL = 0.5, 0.1


def fired_share(records: list[dict], population: str) -> str:
    shares = [r["populations"][population]["fired"] / r["populations"][population]["cases"] for r in records]
    return f"{100 * float(np.median(shares)):.0f} %" if shares else "-"


def summarise(run: Path) -> None:
    document = read_latents_document(run)
    active = [r for r in document["latents"] if r["active"]]
    populations = list(document["populations"])
    print(f"## {run_name(document)} ({run})")
    print(
        f"{len(active)} of {len(document['latents'])} latents active on {document['cases']} cases "
        f"({', '.join(f'{n} {p}' for p, n in document['populations'].items())})\n"
    )
    print("| category | latents | high / medium / low | median cases fired: " + " / ".join(populations) + " |")
    print("|---|---|---|---|")
    for category in CATEGORIES:
        members = [r for r in active if r["category"] == category]
        levels = Counter(r["confidence_level"] for r in members)
        fired = " / ".join(fired_share(members, p) for p in populations)
        print(f"| {category} | {len(members)} | {levels['high']} / {levels['medium']} / {levels['low']} | {fired} |")
    other = [r for r in active if r["category"] == "background/other"]
    matched = sum(r["matched"] for r in other)
    selective = Counter(
        r["target"]
        for r in other
        if not r["matched"]
        and r["top_scores"]
        and (r["top_scores"][0]["precision"] or 0) >= SELECTIVE_PRECISION
        and (r["top_scores"][0]["recall"] or 0) < PARTIAL_RECALL
    )
    print(
        f"\nbackground/other: {matched} match the background; {sum(selective.values())} unmatched fire selectively "
        f"on a small part of their best target (precision >= {SELECTIVE_PRECISION}, recall < {PARTIAL_RECALL}): "
        + (", ".join(f"{t} {n}" for t, n in selective.most_common()) or "none")
        + "\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="folders written by `medseglens interpret`")
    for run in parser.parse_args().runs:
        summarise(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
