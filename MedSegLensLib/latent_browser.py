"""The latent browser's data: one row per latent active in the case, sortable and filterable.

The rows come from the worker's `encode` result; the Slicer widget and the
browser viewer both show `LatentTable.view()` and turn a click on a column
header into `sort_by(column)`, so sorting and filtering behave the same in both
and are tested without Qt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

COLUMNS = ("Latent", "Category", "Description", "Activation", "Population specificity")


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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LatentRow":
        return cls(**{name: data.get(name) for name in cls.__dataclass_fields__ if name in data})

    def cells(self) -> tuple[str, str, str, str, str]:
        """The texts shown in `COLUMNS` order."""
        category = self.category or "-"
        if self.category and self.confidence is not None:
            category = f"{self.category} ({self.confidence:.2f})"
        activation = f"{self.max:.3g} (mean {self.mean_active:.3g}, {100 * self.active_fraction:.1f} % of brain)"
        return (str(self.latent), category, self.description, activation, self.specificity)

    def sort_key(self, column: int) -> tuple:
        """Ascending key for a column; rows without a value sort last."""
        missing = (1,)
        if column == 0:
            return (0, self.latent)
        if column == 1:
            if not self.category:
                return missing
            return (0, self.category.lower(), -(self.confidence or 0.0), self.latent)
        if column == 2:
            return (0, self.description.lower(), self.latent) if self.description else missing
        if column == 3:
            return (0, self.max, self.latent)
        if self.specificity_score is not None and math.isfinite(self.specificity_score):
            return (0, self.specificity_score, self.latent)
        return (0, -math.inf, self.specificity.lower(), self.latent) if self.specificity else missing

    def matches(self, text: str) -> bool:
        """Every word of `text` appears in the row's cells (case-insensitive); a bare number matches the index."""
        words = text.lower().split()
        haystack = " ".join(self.cells()).lower()
        return all(str(self.latent) == word if word.isdigit() else word in haystack for word in words)


class LatentTable:
    """Rows plus the user's current sort column, direction and filter text."""

    def __init__(self, rows: list[LatentRow]):
        self.rows = list(rows)
        self.sort_column = 3
        self.descending = True
        self.filter_text = ""
        self._by_latent = {row.latent: row for row in self.rows}

    @classmethod
    def from_result(cls, data: dict[str, Any]) -> "LatentTable":
        return cls([LatentRow.from_json(row) for row in data.get("latents", [])])

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, latent: int) -> LatentRow | None:
        return self._by_latent.get(int(latent))

    def sort_by(self, column: int) -> None:
        """A click on a header: sort by `column`; the same column again flips the direction.

        A new numeric column (activation, specificity) starts strongest first, a text column A to Z.
        """
        descending = not self.descending if column == self.sort_column else column in (3, 4)
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
