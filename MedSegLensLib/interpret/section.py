"""The interpretation's section of the HTML report (`MedSegLensLib.report`)."""

from __future__ import annotations

from ..report import Figure, Section, Table
from .artefacts import ARTEFACT_CATEGORIES
from .categories import (
    AUROC_MIN,
    CATEGORIES,
    HELD_OUT_CASES_MIN,
    KAPPA_MIN,
    LIFT_MIN,
    LOCATED_LIFT_MIN,
    PRECISION_MIN,
)


def interpret_section(
    document: dict,
    chosen: dict[str, list[dict]],
    card_files: dict[int, str],
    source: str,
    command: str,
    figure: str = "categories.png",
    key: str = "interpret",
) -> Section:
    counts = document["category_counts"]
    active = sum(counts.values())
    validation, artefacts = document["validation"], document["artefacts"]
    flagged = sum(artefacts["counts"].values())
    total = len(document["latents"])
    populations = ", ".join(f"{n} {p}" for p, n in document["populations"].items())
    scoring = document["scoring"]
    paragraphs = [
        f"{active} of {total} latents are active on {document['cases']} cases ({populations}). Each latent's map "
        f"(nearest-neighbour on the image grid) is scored against the tumour subregions, the tumour boundary "
        f"(within {scoring['shell_mm']:g} mm outside the whole tumour) and the healthy tissue classes: voxel AUROC "
        f"and the Dice, IoU, precision, recall and Cohen's kappa at the threshold with the best Dice, from "
        f"histograms with bins {scoring['bin_ratio']:.3f}x wide (each score's binning bound is in scores.csv).",
        f"Labels are chosen on {validation['fit_cases']} fit cases and scored on {validation['held_out_cases']} "
        f"held-out ones (split by case id): the target with the highest kappa on the fit cases and its best-Dice "
        f"threshold there are kept only if, on the held-out cases at that threshold, kappa >= {KAPPA_MIN} and "
        f"AUROC >= {AUROC_MIN} (coverage), or precision >= {PRECISION_MIN} x the target's attainable precision "
        f"on the layer's grid and >= {LIFT_MIN:g}x its prevalence in >= {HELD_OUT_CASES_MIN} held-out cases "
        f"(selectivity); otherwise the latent is 'unlabelled'; a periodic latent keeps its class's name only at a "
        f"held-out lift >= {LOCATED_LIFT_MIN:g}, else it is an artefact. {validation['validated']} of "
        f"{validation['active']} active latents "
        f"({100 * validation['validated_share']:.1f} %) carry a held-out-validated label. Confidence = min(2 "
        f"(AUROC - 0.5), kappa margin over the runner-up) on the held-out cases. A latent 'fires' in a case when "
        f"it is active on at least {scoring['min_firing_ml']:g} ml at its threshold (its location counts only "
        f"activation at or above that threshold too).",
        f"{flagged} active latents map the network's machinery rather than anatomy and are named as artefacts: "
        + ", ".join(f"{artefacts['counts'][c]} {c.split(': ')[1]}" for c in ARTEFACT_CATEGORIES)
        + f" (a spectral peak >= {artefacts['peak_ratio_min']:g}x a flat spectrum's at the "
        f"{artefacts['grid_period_voxels']}-voxel up-sampling period or at the sliding-window step, or >= "
        f"{100 * artefacts['edge_share_min']:.0f} % of the activation mass on the volume's edge, or >= "
        f"{100 * artefacts['outside_share_min']:.0f} % outside the brain; see docs/interpret.md). Cards show "
        f"activation inside the brain only.",
    ]
    count_table = Table(
        "Active latents per category",
        ["category", "latents", "% of active"],
        [[c, counts[c], round(100 * counts[c] / active, 1) if active else 0.0] for c in CATEGORIES],
        source=source,
    )
    strongest = [[r["index"], c, r["confidence"], r["description"]] for c in CATEGORIES for r in chosen.get(c, [])[:3]]
    strong_table = Table(
        "Strongest latents per category (up to 3; all cards in gallery.html)",
        ["latent", "category", "confidence", "description"],
        strongest,
        source=source,
    )
    figures = [Figure(figure, "Share of active latents per category", source)]
    for category in CATEGORIES:
        best = chosen.get(category) or []
        if best and best[0]["index"] in card_files:
            figures.append(
                Figure(
                    card_files[best[0]["index"]],
                    f"Strongest {category} latent ({best[0]['index']}): {best[0]['description']}",
                    source,
                )
            )
    return Section(
        key, "Automatic interpretation of SAE latents", paragraphs, [count_table, strong_table], figures, command
    )
