"""The latent browser's data: one row per latent active in the case, sortable and filterable.

The rows come from the worker's `encode` result; the Slicer widget and the
browser viewer both show `LatentTable.view()` and turn a click on a column
header into `sort_by(column)`, so sorting and filtering behave the same in both
and are tested without Qt.

One line per latent: index, category, confidence, a short name (at most
`SHORT_NAME_CHARS` characters, from the description's first clause), the peak
activation here against the latent's typical activation (the 99th percentile of
its codes on the SAE's training rows, `latent_scales.json`), and population
specificity. The full record of the selected latent (description, card,
per-population firing, top cases) is `latent_details`' job. Records from
`latents.json` are read defensively: fields may be missing or added.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Column indices are part of the interface (the CLI's --sort, the Slicer table, the page's headers): 0-4 keep
# their meaning of before (the description column became the short name); confidence was added last.
COLUMNS = ("Latent", "Category", "Name", "Here / typical", "Specificity", "Confidence")
ACTIVATION_COLUMN = 3
CONFIDENCE_COLUMN = 5
SHORT_NAME_CHARS = 40
TYPICAL_FILE = "latent_scales.json"  # in the SAE folder (written by `medseglens steer-scales`)


def short_name(description: str, category: str = "", limit: int = SHORT_NAME_CHARS) -> str:
    """A name that fits one line: the description's first clause (before '(' ';' ':' or ','), else the category."""
    text = re.split(r"[(;:,]| - ", description or "", maxsplit=1)[0].strip() or (category or "").strip()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def read_typical(path: str | Path) -> list[float] | None:
    """Each latent's typical activation from an SAE folder's `latent_scales.json` (None when absent or unreadable)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        values = [_number(v) for v in data["typical"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [v if v is not None and v > 0 else 0.0 for v in values]


@dataclass(frozen=True)
class LatentRow:
    """One latent in one case: strength of its activation and what is known about it."""

    latent: int
    max: float
    mean_active: float
    active_fraction: float  # share of the brain (layer voxels) where it is active
    active_voxels: int
    category: str = ""
    confidence: float | None = None
    description: str = ""
    specificity: str = ""
    specificity_score: float | None = None
    typical: float | None = None  # typical activation on the SAE's training rows (latent_scales.json)

    @classmethod
    def from_json(cls, data: dict[str, Any], typical: list[float] | None = None) -> LatentRow:
        row = cls(**{name: data.get(name) for name in cls.__dataclass_fields__ if name in data})
        if row.typical is None and typical is not None and 0 <= row.latent < len(typical) and typical[row.latent] > 0:
            row = cls(**{**row.__dict__, "typical": typical[row.latent]})
        return row

    @property
    def name(self) -> str:
        return short_name(self.description, self.category)

    @property
    def ratio(self) -> float | None:
        """Peak here over the typical activation (None without a typical activation)."""
        return self.max / self.typical if self.typical else None

    def activation_text(self) -> str:
        here = f"{self.max:.3g}"
        return here if self.ratio is None else f"{here} / {self.typical:.3g} (×{self.ratio:.1f})"

    def cells(self) -> tuple[str, str, str, str, str, str]:
        """The texts shown in `COLUMNS` order."""
        confidence = "" if self.confidence is None else f"{self.confidence:.2f}"
        return (str(self.latent), self.category or "-", self.name, self.activation_text(), self.specificity, confidence)

    def sort_key(self, column: int) -> tuple:
        """Ascending key for a column; rows without a value sort last."""
        missing = (1,)
        if column == 0:
            return (0, self.latent)
        if column == 1:
            if not self.category:
                return missing
            return (0, self.category.lower(), -(self.confidence or 0.0), self.latent)
        if column == CONFIDENCE_COLUMN:
            return missing if self.confidence is None else (0, self.confidence, self.latent)
        if column == 2:
            return (0, self.name.lower(), self.latent) if self.name else missing
        if column == ACTIVATION_COLUMN:  # unusually strong here first when typical activations are known
            return (0, self.max if self.ratio is None else self.ratio, self.latent)
        if self.specificity_score is not None and math.isfinite(self.specificity_score):
            return (0, self.specificity_score, self.latent)
        return (0, -math.inf, self.specificity.lower(), self.latent) if self.specificity else missing

    def matches(self, text: str) -> bool:
        """Every word of `text` appears in the row's cells or description (case-insensitive); a bare number
        matches the index."""
        words = text.lower().split()
        haystack = " ".join((*self.cells(), self.description)).lower()
        return all(str(self.latent) == word if word.isdigit() else word in haystack for word in words)


class LatentTable:
    """Rows plus the user's current sort column, direction and filter text."""

    def __init__(self, rows: list[LatentRow]):
        self.rows = list(rows)
        self.sort_column = ACTIVATION_COLUMN
        self.descending = True
        self.filter_text = ""
        self._by_latent = {row.latent: row for row in self.rows}

    @classmethod
    def from_result(cls, data: dict[str, Any], typical: list[float] | None = None) -> LatentTable:
        """The `encode` result's rows; `typical` (per latent, see `read_typical`) adds "here vs typical"."""
        return cls([LatentRow.from_json(row, typical) for row in data.get("latents", [])])

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, latent: int) -> LatentRow | None:
        return self._by_latent.get(int(latent))

    def sort_by(self, column: int) -> None:
        """A click on a header: sort by `column`; the same column again flips the direction.

        A new numeric column (confidence, activation, specificity) starts strongest first, a text column A to Z.
        """
        numeric = (ACTIVATION_COLUMN, 4, CONFIDENCE_COLUMN)
        descending = not self.descending if column == self.sort_column else column in numeric
        self.set_sort(column, descending)

    def set_sort(self, column: int, descending: bool) -> None:
        if not 0 <= column < len(COLUMNS):
            raise IndexError(f"column {column} is not one of the {len(COLUMNS)} latent columns")
        self.sort_column, self.descending = column, bool(descending)

    def view(self) -> list[LatentRow]:
        """The rows that pass the filter, in the current order (rows without a value always last)."""
        shown = [row for row in self.rows if row.matches(self.filter_text)]
        present = [row for row in shown if row.sort_key(self.sort_column)[0] == 0]
        absent = [row for row in shown if row.sort_key(self.sort_column)[0] != 0]
        present.sort(key=lambda row: row.sort_key(self.sort_column), reverse=self.descending)
        absent.sort(key=lambda row: row.latent)
        return present + absent


def _records(data: Any) -> dict[int, dict]:
    if not isinstance(data, dict) or not isinstance(data.get("latents"), list):
        return {}
    records = {}
    for position, record in enumerate(data["latents"]):
        if isinstance(record, dict):
            index = record.get("index", position)
            if isinstance(index, int) and not isinstance(index, bool):
                records[index] = record
    return records


def read_interpretation(path: str | Path) -> dict[int, dict]:
    """`latents.json`'s records by latent index ({} when absent or unreadable: the details pane then says less)."""
    try:
        return _records(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def card_file(interpretation: str | Path, latent: int) -> Path:
    """Where `medseglens interpret` puts a latent's card, beside its `latents.json`."""
    return Path(interpretation).parent / "cards" / f"latent-{int(latent):05d}.png"


def latent_details(row: LatentRow | None, record: dict | None) -> dict[str, Any]:
    """The details pane of one latent: full description, validation and artefact notes, per-population firing
    (cases fired / cases, mean active volume and peak) and top cases; JSON-ready, every field optional."""
    record = record if isinstance(record, dict) else {}
    details: dict[str, Any] = {"latent": row.latent if row else record.get("index")}
    description = str(record.get("description") or (row.description if row else "") or "")
    details["description"] = description
    details["category"] = str(record.get("category") or (row.category if row else "") or "")
    details["name"] = short_name(description, details["category"])
    notes = []
    level = record.get("confidence_level")
    confidence = _number(record.get("confidence")) if "confidence" in record else (row.confidence if row else None)
    if confidence is not None:
        notes.append(f"confidence {confidence:.2f}" + (f" ({level})" if isinstance(level, str) else ""))
    if isinstance(record.get("validated"), bool):
        notes.append("label held on held-out cases" if record["validated"] else "label not validated on held-out cases")
    artefact = record.get("artefact")
    if isinstance(artefact, dict) and isinstance(artefact.get("kind"), str):
        notes.append(f"artefact: {artefact['kind'].removeprefix('artefact: ')}")
    if row is not None:
        notes.append(
            f"here: peak {row.max:.3g}, mean {row.mean_active:.3g}, {100 * row.active_fraction:.1f} % of brain"
        )
        if row.typical:
            notes.append(f"typical activation {row.typical:.3g} (peak here ×{row.ratio:.1f})")
        if row.specificity:
            notes.append(f"populations: {row.specificity}")
    details["notes"] = notes
    populations = []
    for name, value in (
        sorted((record.get("populations") or {}).items()) if isinstance(record.get("populations"), dict) else []
    ):
        if isinstance(value, dict):
            cases, fired = _number(value.get("cases")), _number(value.get("fired"))
            volume, peak = _number(value.get("mean_active_ml")), _number(value.get("mean_peak"))
            populations.append(
                {
                    "population": str(name),
                    "fired": "—" if cases is None or fired is None else f"{fired:g} / {cases:g}",
                    "volume": "—" if volume is None else f"{volume:.3g} ml",
                    "peak": "—" if peak is None else f"{peak:.3g}",
                }
            )
    details["populations"] = populations
    top = record.get("top_cases") if isinstance(record.get("top_cases"), list) else []
    details["top_cases"] = [
        {
            "case_id": str(c.get("case_id", "")),
            "population": str(c.get("population", "")),
            "peak": "—" if _number(c.get("peak")) is None else f"{c['peak']:.3g}",
        }
        for c in top
        if isinstance(c, dict)
    ]
    return details
