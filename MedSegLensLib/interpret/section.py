"""The interpretation's section of the HTML report (`MedSegLensLib.report`)."""

from __future__ import annotations

from ..report import Figure, Section, Table
from .categories import AUROC_MIN, CATEGORIES, KAPPA_MIN


def interpret_section(document: dict, chosen: dict[str, list[dict]], card_files: dict[int, str], source: str,
                      command: str, figure: str = "categories.png", key: str = "interpret") -> Section:
    counts = document["category_counts"]
    outside = sum(1 for r in document["latents"] if r["category"] == "background/other" and r["matched"])
    active = sum(counts.values())
    total = len(document["latents"])
    populations = ", ".join(f"{n} {p}" for p, n in document["populations"].items())
    scoring = document["scoring"]
    paragraphs = [
        f"{active} of {total} latents are active on {document['cases']} cases ({populations}). Each latent's map "
        f"(nearest-neighbour on the image grid) is scored against the tumour subregions, the tumour boundary "
        f"(within {scoring['shell_mm']:g} mm outside the whole tumour) and the healthy tissue classes: voxel AUROC "
        f"and the Dice, IoU, precision, recall and Cohen's kappa at the threshold with the best Dice, from "
        f"histograms with bins {scoring['bin_ratio']:.3f}x wide (each score's binning bound is in scores.csv).",
        f"The category is the target with the highest kappa when kappa >= {KAPPA_MIN} and AUROC >= {AUROC_MIN}, "
        f"else background/other; confidence = min(2 (AUROC - 0.5), kappa margin over the runner-up). A latent "
        f"'fires' in a case when it is active on at least {scoring['min_firing_ml']:g} ml at its best-Dice "
        f"threshold (its location counts only activation at or above that threshold too).",
        f"Of the {counts['background/other']} background/other latents, {outside} match the background (outside "
        f"the brain) and {counts['background/other'] - outside} match no class.",
    ]
    count_table = Table("Active latents per category", ["category", "latents", "% of active"],
                        [[c, counts[c], round(100 * counts[c] / active, 1) if active else 0.0] for c in CATEGORIES],
                        source=source)
    strongest = [[r["index"], c, r["confidence"], r["description"]] for c in CATEGORIES for r in chosen.get(c, [])[:3]]
    strong_table = Table("Strongest latents per category (up to 3; all cards in gallery.html)",
                         ["latent", "category", "confidence", "description"], strongest, source=source)
    figures = [Figure(figure, "Share of active latents per category", source)]
    for category in CATEGORIES:
        best = chosen.get(category) or []
        if best and best[0]["index"] in card_files:
            figures.append(Figure(card_files[best[0]["index"]],
                                  f"Strongest {category} latent ({best[0]['index']}): {best[0]['description']}", source))
    return Section(key, "Automatic interpretation of SAE latents", paragraphs, [count_table, strong_table],
                   figures, command)
