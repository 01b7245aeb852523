"""One interpretation run: stream the cohort through an encoder, score, label, and write every output.

The encoder is any callable `Case -> LayerCodes` (the CLI wraps the capture
package's `encode_case`; tests plant codes), so this module never touches a
network. The output folder is published atomically when everything is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..data import Case, CaseFiles
from ..errors import ParameterError
from ..fileio import atomic_directory
from ..report import write_section
from .cards import card_panel, modality_for, render_card
from .categories import label_all
from .distribution import category_counts, plot_distribution
from .evidence import LayerCodes, load_case_maps
from .gallery import strongest_by_category, write_gallery
from .records import latent_records
from .scoring import LatentScorer, ScoreTable, ScoringSettings
from .section import interpret_section
from .split import held_out_cases
from .tables import write_tables

Encoder = Callable[[Case], LayerCodes]


@dataclass
class InterpretSettings:
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    cards_per_category: int = 6
    cases_per_card: int = 3

    def __post_init__(self) -> None:
        if self.cards_per_category < 0 or self.cases_per_card < 1:
            raise ParameterError(
                f"cards per category ({self.cards_per_category}) must be >= 0 and cases per card "
                f"({self.cases_per_card}) >= 1"
            )


@dataclass
class InterpretResult:
    folder: Path
    table: ScoreTable
    records: list[dict]
    counts: dict[str, int]
    cards: dict[int, str]


def score_cases(
    cases: list[CaseFiles],
    encode: Encoder,
    n_latents: int,
    settings: ScoringSettings,
    info: dict | None = None,
    progress: bool = True,
) -> ScoreTable:
    """Stream every case once: read its maps, encode it, add it to the histograms (fit or held-out half)."""
    scorer = LatentScorer(n_latents, settings, held_out_cases((c.case_id, c.population) for c in cases))
    for files in tqdm(cases, desc="scoring latents", unit="case", disable=not progress):
        case, maps = load_case_maps(files)
        scorer.add_case(maps, encode(case))
    return scorer.finish(info)


def write_cards(
    folder: Path,
    chosen: dict[str, list[dict]],
    cases: list[CaseFiles],
    encode: Encoder,
    source: str,
    cases_per_card: int,
    progress: bool = True,
) -> dict[int, str]:
    """Render a card per chosen latent; each needed case is read and encoded once. Returns index -> file name."""
    wanted = {r["index"]: r for members in chosen.values() for r in members}
    needed: dict[str, list[int]] = {}
    for index, record in wanted.items():
        for top in record["top_cases"][:cases_per_card]:
            needed.setdefault(top["case_id"], []).append(index)
    by_id = {files.case_id: files for files in cases}
    panels: dict[int, dict[str, object]] = {index: {} for index in wanted}
    for case_id in tqdm(list(needed), desc="latent cards", unit="case", disable=not progress or not needed):
        case, maps = load_case_maps(by_id[case_id])
        codes = encode(case)
        for index in needed[case_id]:
            panels[index][case_id] = card_panel(case, codes, index, modality_for(wanted[index]), maps.brain)
    files: dict[int, str] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for index, record in wanted.items():
        ordered = [panels[index][top["case_id"]] for top in record["top_cases"][:cases_per_card]]
        name = f"cards/latent-{index:05d}.png"
        render_card(record, ordered, folder.parent / name, source)
        files[index] = name
    return files


def interpret(
    cases: list[CaseFiles],
    encode: Encoder,
    n_latents: int,
    out: str | os.PathLike,
    *,
    info: dict | None = None,
    source: str = "",
    command: str = "",
    title: str = "",
    settings: InterpretSettings | None = None,
    overwrite: bool = False,
    progress: bool = True,
    run_name: str = "latents",
) -> InterpretResult:
    """Score, label and describe every latent on `cases`; write tables, cards, gallery, figure and report section."""
    settings = settings or InterpretSettings()
    with atomic_directory(out, overwrite=overwrite) as tmp:
        table = score_cases(cases, encode, n_latents, settings.scoring, info, progress)
        records = latent_records(table, label_all(table))
        document = write_tables(tmp, table, records)
        chosen = strongest_by_category(records, settings.cards_per_category)
        cards = write_cards(tmp / "cards", chosen, cases, encode, source, settings.cases_per_card, progress)
        counts = category_counts(records)
        write_gallery(tmp / "gallery.html", chosen, cards, counts, title or "MedSegLens latent gallery", source)
        plot_distribution({run_name: counts}, tmp / "categories.png", source)
        write_section(interpret_section(document, chosen, cards, source, command), tmp)
    return InterpretResult(Path(out), table, records, counts, cards)
