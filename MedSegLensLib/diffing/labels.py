"""Human-readable latent labels from the automatic interpretation (`latents.json`), when there is one.

The interpretation step writes `latents.json` (by default inside the SAE folder) with
a category and a one-sentence description per latent. Diffing only reads it to name
latents in tables and figures; without it latents are shown by index.
Accepted shapes: `{"latents": [{"latent"|"index"|"id": i, "category": ..., "description": ...}, ...]}`,
the bare list, or a mapping from the index (as text) to such a record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

LABELS_FILE = "latents.json"


@dataclass(frozen=True)
class LatentLabel:
    category: str
    description: str = ""


def _records(data) -> list[tuple[int, dict]]:
    if isinstance(data, dict) and isinstance(data.get("latents"), (list, dict)):
        data = data["latents"]
    if isinstance(data, dict):
        return [(int(key), value) for key, value in data.items() if isinstance(value, dict)]
    records = []
    for position, value in enumerate(data):
        index = next((value[k] for k in ("latent", "index", "id") if k in value), position)
        records.append((int(index), value))
    return records


def read_labels(path: str | Path) -> dict[int, LatentLabel]:
    """Labels by latent index from a `latents.json` file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        records = _records(data)
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InputError(
            f"{path}: not a readable latents.json ({' '.join(str(exc).split())[:100]}); "
            "pass the file `medseglens interpret` wrote, or leave the labels out"
        ) from None
    return {index: LatentLabel(str(rec.get("category", "")), str(rec.get("description", ""))) for index, rec in records}


def labels_for(sae_dir: str | Path, explicit: str | Path | None = None) -> dict[int, LatentLabel]:
    """Labels from `explicit`, else from the SAE folder's latents.json, else none."""
    if explicit is not None:
        return read_labels(explicit)
    default = Path(sae_dir) / LABELS_FILE
    return read_labels(default) if default.is_file() else {}


def label_text(labels: dict[int, LatentLabel], latent: int) -> str:
    """'category: description' (or '' when the latent has no label)."""
    label = labels.get(int(latent))
    if label is None:
        return ""
    return f"{label.category}: {label.description}" if label.description else label.category
