"""The latent browser: the case's latents with what the interpretation says about them, sortable and filterable.

Rows come from two places. The workspace index may list precomputed latent maps
per case (shown at once, no model run). Once the worker's `encode` job has
analysed the shown case (model + SAE, annotated from the SAE's interpretation
file), every latent active in the case is listed through the shared
`LatentTable` (the Slicer module's table: same sort keys, same filter). A click
shows a precomputed map when there is one for that latent, else asks the worker
for it (`latent_map`, computed from the cached codes: no network run).

One line per latent (index, category, confidence, short name, peak here against
the typical activation, specificity); the selected latent's full record (from
the interpretation file: description, card, per-population firing, top cases)
goes to the details pane (`latent_details` state).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from ..latent_browser import COLUMNS, LatentRow, LatentTable, latent_details, short_name
from .workspace import Overlay, WorkspaceCase

MAX_CARD_BYTES = 2_000_000  # a card larger than this is not inlined into the page

WORKER_PREFIX = "latent-"  # name of a map the worker computed: latent-<index>


def worker_map_name(latent: int) -> str:
    return f"{WORKER_PREFIX}{latent}"


def _overlay_row(overlay: Overlay) -> dict:
    return {
        "name": overlay.name,
        "latent": "" if overlay.latent is None else overlay.latent,
        "category": overlay.category or "-",
        "confidence": "",
        "short": short_name(overlay.description, overlay.category),
        "description": overlay.description,
        "activation": "precomputed",
        "specificity": "" if overlay.specificity is None else f"{overlay.specificity:.2f}",
    }


def _table_row(row: LatentRow, name: str) -> dict:
    """The shared table's cells (one line each), plus the full description for the row's tooltip."""
    _, category, short, activation, specificity, confidence = row.cells()
    return {
        "name": name,
        "latent": row.latent,
        "category": category,
        "confidence": confidence,
        "short": short,
        "description": row.description,
        "activation": activation,
        "specificity": specificity,
    }


def inline_png(path: Path | None) -> str | None:
    """A card image as a data: URL (the page loads nothing but the viewer's own files), None when absent."""
    if path is None or not path.is_file() or path.stat().st_size > MAX_CARD_BYTES:
        return None
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


class LatentBrowser:
    """The table behind the page's latent browser (`latents`, `latent_sort`, `latent_descending` state)."""

    def __init__(
        self,
        state,
        sae_name: str | None,
        typical: list[float] | None = None,
        records: dict[int, dict] | None = None,
        card: Callable[[int], Path | None] | None = None,
    ):
        self.state = state
        self.sae_name = sae_name
        self.typical = typical  # per latent, from the SAE's latent_scales.json
        self.records = records or {}  # latents.json records by index
        self.card = card or (lambda latent: None)
        self.case: WorkspaceCase | None = None
        self.table: LatentTable | None = None
        state.latent_columns = list(COLUMNS)
        state.latent_filter = ""
        state.latents = []
        state.latent_sort = LatentTable([]).sort_column
        state.latent_descending = True
        state.latent_details = None

    def set_case(self, case: WorkspaceCase) -> None:
        self.case, self.table = case, None
        self.state.latent_details = None
        self.publish()

    def set_analysis(self, result: dict) -> None:
        """The `encode` result of the shown case: every active latent becomes a row."""
        self.table = LatentTable.from_result(result, self.typical)
        self.publish()

    def select(self, latent: int | None) -> None:
        """Fill the details pane for `latent` (None empties it)."""
        if latent is None:
            self.state.latent_details = None
            return
        row = self.table.row(latent) if self.table is not None else None
        details = latent_details(row, self.records.get(int(latent)))
        details["latent"] = int(latent)
        if row is None and not details["description"]:
            overlay = self.precomputed(latent)
            if overlay is not None:
                details.update(
                    description=overlay.description,
                    category=overlay.category,
                    name=short_name(overlay.description, overlay.category),
                )
        details["card"] = inline_png(self.card(int(latent)))
        self.state.latent_details = details

    def sort_by(self, column: int) -> None:
        if self.table is not None:
            self.table.sort_by(int(column))
            self.publish()

    def set_filter(self, text: str) -> None:
        self.publish(str(text or ""))

    def precomputed(self, latent: int) -> Overlay | None:
        """The index's map of `latent` of the analysis SAE, if the workspace has one for this case."""
        for overlay in self.case.overlays if self.case else []:
            if overlay.latent == latent and overlay.sae in (None, self.sae_name):
                return overlay
        return None

    def description(self, latent: int) -> str:
        """What the interpretation file says about `latent` ("" when it says nothing)."""
        return str((self.records.get(int(latent)) or {}).get("description") or "")

    def map_name(self, latent: int) -> str:
        """The row (and map) name of `latent`: its precomputed overlay's, else the worker's `latent-<j>`."""
        overlay = self.precomputed(latent)
        return overlay.name if overlay else worker_map_name(latent)

    def latent_of(self, name: str) -> int | None:
        """The latent a row name stands for (a precomputed overlay's, or the worker's `latent-<j>`)."""
        for overlay in self.case.overlays if self.case else []:
            if overlay.name == name:
                return overlay.latent
        suffix = name.removeprefix(WORKER_PREFIX)
        if (
            self.table is not None
            and name.startswith(WORKER_PREFIX)
            and suffix.isdigit()
            and self.table.row(int(suffix))
        ):
            return int(suffix)
        return None

    def publish(self, filter_text: str | None = None) -> None:
        text = self.state.latent_filter if filter_text is None else filter_text
        rows, listed = [], set()
        if self.table is not None:
            self.table.filter_text = text
            for row in self.table.view():
                rows.append(_table_row(row, self.map_name(row.latent)))
                listed.add(rows[-1]["name"])
            self.state.latent_sort, self.state.latent_descending = self.table.sort_column, self.table.descending
        words = text.lower().split()
        for overlay in self.case.overlays if self.case else []:
            shown = _overlay_row(overlay)
            haystack = " ".join(str(v) for v in shown.values()).lower()
            if overlay.name not in listed and all(word in haystack for word in words):
                rows.append(shown)
        self.state.latents = rows
