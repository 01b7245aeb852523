"""Report sections as data, rendered to static HTML (no JavaScript, no network)."""

from __future__ import annotations

import html
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InputError
from ..fileio import write_json_atomic, write_text_atomic

SECTION_FILE = "section.json"


@dataclass
class Figure:
    """A PNG next to the section file; `source` says which data and command made it."""

    path: str
    caption: str
    source: str


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list]
    source: str
    note: str = ""


@dataclass
class Section:
    key: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    command: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> Section:
        return cls(
            key=obj["key"],
            title=obj["title"],
            paragraphs=list(obj.get("paragraphs", [])),
            tables=[Table(**t) for t in obj.get("tables", [])],
            figures=[Figure(**f) for f in obj.get("figures", [])],
            command=obj.get("command", ""),
        )


def write_section(section: Section, folder: str | os.PathLike) -> Path:
    """Save `section` as `folder/section.json`; its figure paths are relative to `folder`."""
    folder = Path(folder)
    for figure in section.figures:
        if not (folder / figure.path).is_file():
            raise InputError(f"{folder / figure.path}: figure of section '{section.key}' is missing")
    target = folder / SECTION_FILE
    write_json_atomic(target, section.to_json())
    return target


def load_section(folder: str | os.PathLike) -> Section:
    path = Path(folder) / SECTION_FILE
    try:
        return Section.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a readable report section ({exc})") from None


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def render_section(section: Section, figure_prefix: str = "") -> str:
    """The section as an HTML fragment; figure paths get `figure_prefix` prepended."""
    e = html.escape
    parts = [f'<section id="{e(section.key)}"><h2>{e(section.title)}</h2>']
    parts += [f"<p>{e(p)}</p>" for p in section.paragraphs]
    if section.command:
        parts.append(f"<p class=cmd>Reproduce: <code>{e(section.command)}</code></p>")
    for table in section.tables:
        head = "".join(f"<th>{e(c)}</th>" for c in table.columns)
        body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in table.rows)
        note = f"<p class=note>{e(table.note)}</p>" if table.note else ""
        parts.append(
            f"<h3>{e(table.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"{note}<p class=source>Data: {e(table.source)}</p>"
        )
    for figure in section.figures:
        src = e(f"{figure_prefix}{figure.path}")
        parts.append(
            f'<figure><img src="{src}" alt="{e(figure.caption)}"><figcaption>{e(figure.caption)}'
            f"<br><span class=source>Data: {e(figure.source)}</span></figcaption></figure>"
        )
    parts.append("</section>")
    return "\n".join(parts)


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}figure{margin:1em 0}
img{max-width:100%;border:1px solid #ddd}.source,.note{color:#666;font-size:.85em}code{background:#f6f6f6}
nav a{margin-right:1em}
"""


def assemble_report(section_folders: list[str | os.PathLike], out_html: str | os.PathLike, title: str) -> Path:
    """Join saved sections into one HTML page; figures are linked relative to the page."""
    out_html = Path(out_html)
    sections = []
    for folder in section_folders:
        folder = Path(folder)
        if (folder / SECTION_FILE).is_file():
            prefix = os.path.relpath(folder, out_html.parent).replace(os.sep, "/") + "/"
            sections.append((load_section(folder), prefix))
    nav = "".join(f'<a href="#{html.escape(s.key)}">{html.escape(s.title)}</a>' for s, _ in sections)
    body = "\n".join(render_section(s, prefix) for s, prefix in sections)
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1><nav>{nav}</nav>{body}</body></html>\n"
    )
    write_text_atomic(out_html, page)
    return out_html
