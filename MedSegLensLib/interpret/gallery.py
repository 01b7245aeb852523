"""The gallery: a static HTML page of the strongest latents of each category, with their cards."""

from __future__ import annotations

import html
import os

from ..fileio import write_text_atomic
from .categories import CATEGORIES


def strongest_by_category(records: list[dict], per_category: int) -> dict[str, list[dict]]:
    """Per category, its active latents with the highest confidence (then best kappa), at most `per_category`."""
    chosen: dict[str, list[dict]] = {}
    for category in CATEGORIES:
        members = [r for r in records if r["active"] and r["category"] == category]
        members.sort(key=lambda r: (-r["confidence"], -(r["top_scores"][0]["kappa"] or 0.0), r["index"]))
        chosen[category] = members[:per_category]
    return chosen


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1300px;padding:0 1em;color:#222}
figure{margin:1em 0;border-top:1px solid #ddd;padding-top:.5em}img{max-width:100%}
.source{color:#666;font-size:.85em}nav a{margin-right:1em}"""


def write_gallery(
    path: str | os.PathLike,
    chosen: dict[str, list[dict]],
    card_files: dict[int, str],
    counts: dict[str, int],
    title: str,
    source: str,
) -> None:
    """`card_files`: latent index -> card path relative to the page; `counts`: active latents per category."""
    e = html.escape
    nav = "".join(f'<a href="#{e(_anchor(c))}">{e(c)} ({counts.get(c, 0)})</a>' for c in CATEGORIES)
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>{e(title)}</title><style>{_STYLE}</style>"
        f"</head><body><h1>{e(title)}</h1><p class=source>Data: {e(source)}</p><nav>{nav}</nav>"
    ]
    for category in CATEGORIES:
        members = chosen.get(category, [])
        parts.append(
            f'<section id="{e(_anchor(category))}"><h2>{e(category)}</h2>'
            f"<p>{counts.get(category, 0)} active latents; the {len(members)} with the highest confidence:</p>"
        )
        for record in members:
            card = card_files.get(record["index"])
            image = f'<img src="{e(card)}" alt="card of latent {record["index"]}">' if card else ""
            parts.append(
                f"<figure>{image}<figcaption><b>Latent {record['index']}</b> "
                f"(confidence {record['confidence']:.2f}, {e(record['confidence_level'])}): "
                f"{e(record['description'])}</figcaption></figure>"
            )
        parts.append("</section>")
    parts.append("</body></html>\n")
    write_text_atomic(path, "\n".join(parts))


def _anchor(category: str) -> str:
    return "cat-" + "".join(ch if ch.isalnum() else "-" for ch in category)
