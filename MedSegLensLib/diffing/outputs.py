"""Write diffing results for machines (JSON, CSV) and people (PNG figures, an HTML report section).

Each writer fills a folder (the CLI publishes it atomically): `<kind>.json` with the
settings, the data it came from and the summary; CSV tables; figures whose footer and
`source` name the data; `section.json` for `MedSegLensLib.report`, and `report.html`
with that one section so the folder can be opened in a browser on its own.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..fileio import write_json_atomic, write_text_atomic
from ..report import Figure, Section, Table, assemble_report, write_section
from . import figures
from .architectures import ArchDiffResult
from .dictionaries import DictionaryComparison
from .labels import LatentLabel, label_text
from .populations import PopulationDiff
from .swap import SwapResult
from .usage import LatentUsage

SURVIVAL_R = 0.5  # a latent "survives" a swap when r(original, swapped) reaches this
MIN_FIRED_FOR_SWAP = 20  # latents firing on fewer rows are left out of the swap figure and counts


def _csv(path: Path, columns: list[str], rows: list[list]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_fmt(v) for v in row])
    write_text_atomic(path, buffer.getvalue())


def _fmt(value):
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{float(value):.6g}"
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    return value


def _finish(folder: Path, section: Section, title: str) -> None:
    write_section(section, folder)
    assemble_report([folder], folder / "report.html", title)


# -- populations ---------------------------------------------------------------------------------


def write_population_outputs(
    diff: PopulationDiff,
    usage: LatentUsage,
    folder: Path,
    data: str,
    command: str,
    labels: dict[int, LatentLabel],
    top: int = 25,
) -> dict:
    folder = Path(folder)
    summary = diff.backbone_summary()
    pops = diff.populations
    rows = []
    for j in range(usage.n_latents):
        for p in pops:
            c = diff.contrasts[p]
            rows.append(
                [
                    j,
                    diff.category[j],
                    label_text(labels, j),
                    p,
                    bool(c.comparable[j]),
                    c.frequency[j],
                    c.frequency_rest[j],
                    c.log_ratio[j],
                    c.ci_low[j],
                    c.ci_high[j],
                    c.activation_log_ratio[j],
                    c.activation_ci_low[j],
                    c.activation_ci_high[j],
                    c.q_enriched[j],
                    c.q_depleted[j],
                    p in diff.enriched_in[j],
                    p in diff.depleted_in[j],
                ]
            )
    _csv(
        folder / "latents.csv",
        [
            "latent",
            "category",
            "label",
            "population",
            "comparable",
            "frequency",
            "frequency_rest",
            "log_ratio",
            "ci_low",
            "ci_high",
            "activation_log_ratio",
            "activation_ci_low",
            "activation_ci_high",
            "q_enriched",
            "q_depleted",
            "enriched",
            "depleted",
        ],
        rows,
    )
    freq = {p: usage.stratum_frequency(p) for p in pops}
    strata_rows = []
    for p in pops:
        members = usage.populations == p
        n_rows = usage.rows[members].sum(0)
        for s, name in enumerate(usage.strata):
            if n_rows[s] == 0:
                continue
            for j in np.flatnonzero(diff.category != "absent"):
                strata_rows.append([j, p, name, int(n_rows[s]), freq[p][s, j]])
    _csv(folder / "strata.csv", ["latent", "population", "stratum", "rows", "frequency"], strata_rows)

    specific = _most_specific(diff, top)
    record = {
        "kind": "population-diff",
        "data": data,
        "command": command,
        "settings": asdict(diff.settings),
        "source": usage.source,
        "cases": {p: int((usage.populations == p).sum()) for p in pops},
        "strata_compared": {p: c.strata for p, c in diff.contrasts.items()},
        "summary": summary,
        "specific": [_latent_record(diff, j, labels) for j in specific],
        "category": diff.category.tolist(),
    }
    write_json_atomic(folder / "populations.json", record)

    names = {j: label_text(labels, j) for j in specific}
    figures.backbone_figure(diff, folder / "backbone.png", data)
    figures.volcano_figure(diff, folder / "volcano.png", data)
    figures.specific_heatmap(diff, freq, usage.strata, specific, folder / "specific.png", data, names)
    per = summary["per_population"]
    table = Table(
        "Shared and population-specific latents",
        ["population", "cases", "active", "enriched", "depleted"],
        [[p, record["cases"][p], per[p]["active"], per[p]["enriched"], per[p]["depleted"]] for p in pops],
        source=data,
        note=(
            f"shared (backbone) {summary['shared']}, specific {summary['specific']}, inconclusive "
            f"{summary['inconclusive']} ({summary['inconclusive_rare']} active in fewer than 2 populations, "
            f"{summary['inconclusive_not_equivalent']} not shown similar), absent {summary['absent']} of "
            f"{summary['latents']} latents; enriched / "
            f"depleted = BH q < {diff.settings.alpha:g} that the fold change in matched strata exceeds "
            f"{diff.settings.ratio:g}"
        ),
    )
    top_table = Table(
        "Most population-specific latents",
        ["latent", "label", "enriched in", "depleted in", "largest |log ratio|"],
        [
            [r["latent"], r["label"], ", ".join(r["enriched_in"]), ", ".join(r["depleted_in"]), r["max_abs_log_ratio"]]
            for r in record["specific"]
        ],
        source=data,
    )
    section = Section(
        key="diff-populations",
        title="Model diffing across populations (pooled SAE)",
        paragraphs=[
            f"Each population is compared with the pooled others on the tissue strata both have (matched strata: "
            f"white matter with white matter, edema with edema), with case-bootstrap 95 % intervals "
            f"({diff.settings.n_boot} replicates) and Benjamini-Hochberg control at {diff.settings.alpha:g}.",
            f"Backbone: {summary['shared']} shared latents; "
            + "; ".join(f"{p}: {per[p]['enriched']} enriched, {per[p]['depleted']} depleted" for p in pops)
            + ".",
        ],
        tables=[table, top_table],
        figures=[
            Figure("backbone.png", "Latent categories and population-specific counts", data),
            Figure("volcano.png", "Log frequency ratio vs BH q per population", data),
            Figure("specific.png", "Firing frequency per population and stratum of the most specific latents", data),
        ],
        command=command,
    )
    _finish(folder, section, "MedSegLens: population diffing")
    return record


def _most_specific(diff: PopulationDiff, top: int) -> list[int]:
    specific = np.flatnonzero(diff.category == "specific")
    strength = np.array(
        [max(abs(np.nan_to_num(diff.contrasts[p].log_ratio[j])) for p in diff.populations) for j in specific]
    )
    return specific[np.argsort(-strength, kind="stable")][:top].tolist() if specific.size else []


def _latent_record(diff: PopulationDiff, j: int, labels: dict[int, LatentLabel]) -> dict:
    return {
        "latent": int(j),
        "label": label_text(labels, j),
        "enriched_in": diff.enriched_in[j],
        "depleted_in": diff.depleted_in[j],
        "max_abs_log_ratio": float(max(abs(np.nan_to_num(diff.contrasts[p].log_ratio[j])) for p in diff.populations)),
        "contrasts": {
            p: {
                "log_ratio": float(c.log_ratio[j]),
                "ci": [float(c.ci_low[j]), float(c.ci_high[j])],
                "frequency": float(c.frequency[j]),
                "frequency_rest": float(c.frequency_rest[j]),
                "q_enriched": float(c.q_enriched[j]),
                "q_depleted": float(c.q_depleted[j]),
            }
            for p, c in diff.contrasts.items()
            if c.comparable[j]
        },
    }


# -- two SAEs of one layer ------------------------------------------------------------------------


def swap_summary(swap: SwapResult, threshold: float) -> dict:
    used = swap.fired >= MIN_FIRED_FOR_SWAP
    shared = used & (np.nan_to_num(swap.partner_similarity, nan=-1) >= threshold)
    other = used & ~shared
    survives = swap.survives(SURVIVAL_R)

    def stats(mask):
        r = np.nan_to_num(swap.correlation[mask], nan=0.0)
        spatial = np.nan_to_num(swap.spatial_correlation[mask], nan=0.0)
        return {
            "latents": int(mask.sum()),
            "surviving": int((survives & mask).sum()),
            "median_fired": float(np.median(swap.fired[mask])) if mask.any() else float("nan"),
            "median_r": float(np.median(r)) if r.size else float("nan"),
            "median_spatial_r": float(np.median(spatial)) if spatial.size else float("nan"),
        }

    return {
        "rows": swap.rows,
        "fvu_own": swap.fvu_own,
        "fvu_swap": swap.fvu_swap,
        "survival_r": SURVIVAL_R,
        "min_fired": MIN_FIRED_FOR_SWAP,
        "shared": stats(shared),
        "not_shared": stats(other),
    }


def write_dictionary_outputs(
    comparison: DictionaryComparison,
    swaps: dict[str, SwapResult],
    folder: Path,
    data: str,
    command: str,
    labels_a: dict[int, LatentLabel],
    labels_b: dict[int, LatentLabel],
    names: tuple[str, str] = ("A", "B"),
) -> dict:
    folder = Path(folder)
    m = comparison.matching
    _csv(
        folder / "pairs.csv",
        ["latent_a", "latent_b", "cosine", "matched", "label_a", "label_b"],
        [
            [a, b, s, bool(s >= comparison.threshold), label_text(labels_a, a), label_text(labels_b, b)]
            for a, b, s in zip(m.a, m.b, m.similarity)
        ],
    )
    for key, swap in swaps.items():
        _csv(
            folder / f"swap_{key}.csv",
            ["latent", "partner", "partner_cosine", "fired", "r", "spatial_r", "kept", "survives"],
            [
                [
                    j,
                    swap.partner[j],
                    swap.partner_similarity[j],
                    int(swap.fired[j]),
                    swap.correlation[j],
                    swap.spatial_correlation[j],
                    swap.kept[j],
                    bool(swap.survives(SURVIVAL_R)[j]),
                ]
                for j in np.flatnonzero(swap.fired > 0)
            ],
        )
    summary = comparison.summary()
    record = {
        "kind": "sae-diff",
        "data": data,
        "command": command,
        "names": list(names),
        "summary": summary,
        "orphans_a": comparison.orphans_a().tolist(),
        "orphans_b": comparison.orphans_b().tolist(),
        "swap": {key: swap_summary(swap, comparison.threshold) for key, swap in swaps.items()},
    }
    write_json_atomic(folder / "saes.json", record)
    figs = [Figure("matching.png", "Decoder cosine of optimally matched latents, with the chance level", data)]
    figures.matching_figure(comparison, folder / "matching.png", data)
    if swaps:
        figures.swap_figure(swaps, comparison.threshold, MIN_FIRED_FOR_SWAP, folder / "swap.png", data)
        figs.append(
            Figure(
                "swap.png",
                "Feature swapping: correlation of each latent before and after decoding "
                "with the other SAE, shared vs not shared",
                data,
            )
        )
    table = Table(
        "Matching",
        ["quantity", "value"],
        [[k, v if not isinstance(v, list) else ", ".join(f"{x:.3f}" for x in v)] for k, v in summary.items()],
        source=data,
    )
    tables = [table]
    if swaps:
        tables.append(
            Table(
                "Feature swapping",
                ["direction", "rows", "FVU own", "FVU swapped", "shared surviving", "not shared surviving"],
                [
                    [
                        key,
                        s["rows"],
                        s["fvu_own"],
                        s["fvu_swap"],
                        f"{s['shared']['surviving']} / {s['shared']['latents']}",
                        f"{s['not_shared']['surviving']} / {s['not_shared']['latents']}",
                    ]
                    for key, s in record["swap"].items()
                ],
                source=data,
                note=(
                    f"a latent survives when r(code, code after the swap) >= {SURVIVAL_R}; frequent latents "
                    "survive more often, so compare the groups' median firing counts (saes.json) too"
                ),
            )
        )
    section = Section(
        key="diff-saes",
        title=f"Model diffing: SAE {names[0]} vs SAE {names[1]} (same layer)",
        paragraphs=[
            f"{summary['matched_above_threshold']} latent pairs reach decoder cosine {comparison.threshold:g} "
            f"({summary['fraction_of_a_matched']:.1%} of {names[0]}'s and {summary['fraction_of_b_matched']:.1%} of "
            f"{names[1]}'s alive latents); with {names[1]} randomly rotated "
            f"{summary['chance_fraction_above_threshold']:.1%} "
            f"would. Orphans: {summary['orphans_a']} of {names[0]}, {summary['orphans_b']} of {names[1]}."
        ],
        tables=tables,
        figures=figs,
        command=command,
    )
    _finish(folder, section, "MedSegLens: SAE diffing")
    return record


# -- two architectures ---------------------------------------------------------------------------


def write_architecture_outputs(
    result: ArchDiffResult,
    folder: Path,
    data: str,
    command: str,
    labels_a: dict[int, LatentLabel],
    labels_b: dict[int, LatentLabel],
    names: tuple[str, str] = ("A", "B"),
    top: int = 25,
) -> dict:
    folder = Path(folder)
    m = result.matching
    order = np.argsort(-m.similarity, kind="stable")
    significant = result.significant()
    rows = [
        [
            m.a[i],
            m.b[i],
            m.similarity[i],
            result.p_value[i],
            result.q_value[i],
            bool(significant[i]),
            bool(m.similarity[i] > result.fwer_threshold),
            int(result.fired_a[m.a[i]]),
            int(result.fired_b[m.b[i]]),
            label_text(labels_a, m.a[i]),
            label_text(labels_b, m.b[i]),
        ]
        for i in order
    ]
    columns = [
        "latent_a",
        "latent_b",
        "correlation",
        "p",
        "q",
        "significant",
        "above_fwer",
        "fired_a",
        "fired_b",
        "label_a",
        "label_b",
    ]
    _csv(folder / "pairs.csv", columns, rows)
    summary = result.summary()
    record = {
        "kind": "architecture-diff",
        "data": data,
        "command": command,
        "names": list(names),
        "summary": summary,
        "settings": {k: (dict(v) if isinstance(v, dict) else v) for k, v in asdict(result.settings).items()},
        "cases": [{"case_id": c, "population": p, "voxels": n} for c, p, n in result.cases],
        "top_pairs": [dict(zip(columns, r)) for r in rows[:top]],
    }
    write_json_atomic(folder / "archs.json", record)
    figures.architecture_figure(result, folder / "matching.png", data)
    section = Section(
        key="diff-archs",
        title=f"Model diffing across architectures: {names[0]} vs {names[1]}",
        paragraphs=[
            f"{summary['significant_bh']} of {summary['pairs']} matched latent pairs correlate beyond the "
            f"block-permutation null (BH q < {result.settings.alpha:g}); {summary['above_fwer_threshold']} exceed the "
            f"family-wise threshold r = {result.fwer_threshold:.3f}. Correlations over {summary['voxels']} stratified "
            f"voxels of {summary['cases']} cases on a common grid {summary['grid']}."
        ],
        tables=[
            Table(
                "Strongest matched pairs",
                ["A latent", "B latent", "r", "q", f"{names[0]} label", f"{names[1]} label"],
                [[r[0], r[1], r[2], r[4], r[9], r[10]] for r in rows[:top]],
                source=data,
            )
        ],
        figures=[Figure("matching.png", "Matched activation correlations vs the block-permutation null", data)],
        command=command,
    )
    _finish(folder, section, "MedSegLens: architecture diffing")
    return record
