"""What other tools found out about each latent, for the latent browser.

- `latents.json` (written by `medseglens interpret`, by default into the SAE
  folder): category, confidence and a one-sentence description per latent.
- `populations.json` (written by `medseglens diff populations`): whether a
  latent is shared by the populations (backbone) or specific to some, and for
  the most specific ones where it is enriched or depleted.

Both are optional: without them the browser shows activation statistics only.
A file that belongs to another SAE is refused when it was named explicitly and
ignored (with a log line) when it was only found in the SAE folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CompatibilityError, InputError

LABELS_FILE = "latents.json"
POPULATIONS_FILE = "populations.json"


@dataclass(frozen=True)
class LatentAnnotation:
    category: str = ""
    confidence: float | None = None
    description: str = ""
    specificity: str = ""
    specificity_score: float | None = None  # largest |log ratio| between populations, when measured


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not valid JSON"
        raise InputError(f"{path}: cannot be read ({reason}); pass the file the MedSegLens command wrote") from None


def _locate(explicit: str | None, sae_dir: Path, default_name: str) -> tuple[Path | None, bool]:
    """(path, named explicitly): an explicit file or folder, else the default file in the SAE folder if present."""
    if explicit:
        path = Path(explicit)
        return (path / default_name if path.is_dir() else path), True
    path = sae_dir / default_name
    return (path if path.is_file() else None), False


def _labels(data: Any, path: Path, n_latents: int, layer: str) -> dict[int, dict]:
    if not isinstance(data, dict) or not isinstance(data.get("latents"), list):
        raise InputError(
            f"{path}: not a latents.json ('latents' list missing); pass the file `medseglens interpret` wrote"
        )
    sae = data.get("sae") or {}
    if sae.get("n_latents", n_latents) != n_latents or sae.get("layer", layer) != layer:
        raise CompatibilityError(
            f"{path}: describes an SAE with {sae.get('n_latents')} latents at {sae.get('layer')!r}, "
            f"not this one ({n_latents} at {layer!r}); interpret this SAE or leave the labels out"
        )
    return {int(rec.get("index", i)): rec for i, rec in enumerate(data["latents"]) if isinstance(rec, dict)}


def _specificity(data: Any, path: Path, n_latents: int) -> tuple[list[str], dict[int, dict]]:
    if not isinstance(data, dict) or not isinstance(data.get("category"), list):
        raise InputError(
            f"{path}: not a populations.json ('category' list missing); pass the file "
            "`medseglens diff populations` wrote"
        )
    if len(data["category"]) != n_latents:
        raise CompatibilityError(
            f"{path}: covers {len(data['category'])} latents, this SAE has {n_latents}; "
            "pass the population diff of this SAE"
        )
    specific = {
        int(rec["latent"]): rec for rec in data.get("specific", []) if isinstance(rec, dict) and "latent" in rec
    }
    return [str(c) for c in data["category"]], specific


def _specificity_text(category: str, record: dict | None) -> str:
    if record is None:
        return category
    parts = []
    if record.get("enriched_in"):
        parts.append("enriched in " + ", ".join(record["enriched_in"]))
    if record.get("depleted_in"):
        parts.append("depleted in " + ", ".join(record["depleted_in"]))
    return f"{category}: {'; '.join(parts)}" if parts else category


def _optional(path: Path | None, explicit: bool, read: Callable[[Any, Path], Any], warn: Callable[[str], None]) -> Any:
    if path is None:
        return None
    if explicit and not path.is_file():
        raise InputError(f"{path}: no such file; pass an existing file or leave the option out")
    try:
        return read(_read_json(path), path)
    except (CompatibilityError, InputError) as exc:
        if explicit:
            raise
        warn(f"ignored {path.name} in the SAE folder: {exc}")
        return None


def read_annotations(
    sae_dir: str | Path,
    n_latents: int,
    layer: str,
    labels: str | None = None,
    populations: str | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> dict[int, LatentAnnotation]:
    """Annotations by latent index from the interpretation and the population diff (either may be absent)."""
    sae_dir = Path(sae_dir)
    found = _optional(*_locate(labels, sae_dir, LABELS_FILE), lambda d, p: _labels(d, p, n_latents, layer), warn) or {}
    spec = _optional(*_locate(populations, sae_dir, POPULATIONS_FILE), lambda d, p: _specificity(d, p, n_latents), warn)
    categories, specific = spec if spec is not None else ([], {})
    out = {}
    for latent in set(found) | set(range(len(categories))):
        record = found.get(latent, {})
        confidence = record.get("confidence")
        specific_record = specific.get(latent)
        score = specific_record.get("max_abs_log_ratio") if specific_record else None
        out[latent] = LatentAnnotation(
            category=str(record.get("category", "")),
            confidence=float(confidence) if isinstance(confidence, (int, float)) else None,
            description=str(record.get("description", "")),
            specificity=_specificity_text(categories[latent], specific_record) if latent < len(categories) else "",
            specificity_score=float(score) if isinstance(score, (int, float)) else None,
        )
    return out
