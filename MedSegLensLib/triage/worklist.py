"""The reading-room worklist: cases sorted by SAE risk, as CSV, JSON and one self-contained HTML page.

    rows = worklist_rows(records, reference, descriptions)
    write_worklist(out_dir, rows, header, reference)   # worklist.csv, .json, index.html, reference.json; all or nothing

worklist.json (what the viewer and the Slicer module read):
    {"format": "medseglens-triage-worklist", "version": 1, "model": {...}, "sae": {...},
     "weights": the risk's weights, "fitted" or "equal (N failures < 10 per feature)" (reference.py),
     "scores": {name: meaning}, "cases": [{"case_id", "population", "rank" (1 = most at risk),
     "risk", "top_latents": [{"latent", "excess", "description"}], "baselines": {name: value},
     "failure" (true/false from a reference segmentation, null without one; never used by a score),
     "seconds": {score: seconds on this case}}, ...]}
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Mapping
from pathlib import Path

from ..fileio import atomic_directory, json_default
from .evaluation import seconds_per_score
from .read import FORMAT, SUPPORTED_VERSIONS
from .reference import BASELINES, Reference

SCORE_MEANINGS = {
    "sae_risk": "SAE failure risk: reconstruction error, rare-latent mass, latent vs predicted tumour volume",
    "entropy": "mean softmax entropy over the predicted tumour",
    "max_prob": "1 - mean max softmax probability over the predicted tumour",
    "tta_volume_cv": "coefficient of variation of the predicted volume under MONAI flips",
    "volume_outlier": "|log predicted volume - calibration mean| / spread",
    "known_population": "calibration failure rate of the case's population",
}


def worklist_rows(records: list[dict], reference: Reference, descriptions: Mapping[int, str]) -> list[dict]:
    """One row per case, most at risk first (ties broken by case id, so the order is reproducible)."""
    rows = []
    for record in records:
        scores = reference.scores(record)
        rows.append(
            {
                "case_id": record["case_id"],
                "population": record.get("population", "unknown"),
                "risk": round(scores["sae_risk"], 6),
                "top_latents": [
                    {"latent": j, "excess": excess, "description": descriptions.get(j, "")}
                    for j, excess in reference.top_latents(record)
                ],
                "baselines": {name: round(scores[name], 6) for name in BASELINES},
                "failure": record.get("failure"),
                "seconds": {k: round(v, 3) for k, v in seconds_per_score(record).items()},
            }
        )
    rows.sort(key=lambda row: (-row["risk"], row["case_id"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def _latent_text(row: dict) -> str:
    return "; ".join(
        f"{t['latent']}" + (f" ({t['description']})" if t["description"] else "") for t in row["top_latents"]
    )


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    seconds = list(rows[0]["seconds"]) if rows else []
    writer.writerow(
        ["rank", "case_id", "population", "risk", "top_latents", *BASELINES, "failure", *[f"s_{s}" for s in seconds]]
    )
    for row in rows:
        writer.writerow(
            [
                row["rank"],
                row["case_id"],
                row["population"],
                row["risk"],
                _latent_text(row),
                *[row["baselines"][b] for b in BASELINES],
                "" if row["failure"] is None else int(row["failure"]),
                *[row["seconds"][s] for s in seconds],
            ]
        )
    return buffer.getvalue()


def html_page(rows: list[dict], header: dict) -> str:
    """A sortable-looking static table (already sorted by risk), no scripts or external assets."""
    heads = ["rank", "case", "population", "SAE risk", "top latents", *BASELINES, "failed (reference)"]
    cells = []
    for row in rows:
        values = [
            row["rank"],
            row["case_id"],
            row["population"],
            f"{row['risk']:.3f}",
            _latent_text(row),
            *[f"{row['baselines'][b]:.3f}" for b in BASELINES],
            "" if row["failure"] is None else ("yes" if row["failure"] else "no"),
        ]
        cells.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in values) + "</tr>")
    meanings = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in SCORE_MEANINGS.items())
    model = header["model"]
    title = f"Triage worklist: {len(rows)} cases, model {model['architecture']} {model['fingerprint'][:12]}"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#eee}"
        "tr:nth-child(-n+6) td{background:#fde8e8}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>Sorted by SAE risk (highest first), SAE layer "
        f"{html.escape(header['sae']['layer'])}; the risk's weights: {html.escape(header['weights'])}.</p>"
        f"<ul>{meanings}</ul><table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in heads)
        + "</tr>"
        + "".join(cells)
        + "</table></body></html>\n"
    )


def write_worklist(out: str | Path, rows: list[dict], header: dict, reference: Reference) -> Path:
    """Publish worklist.csv, worklist.json, index.html and reference.json in a new folder, all at once."""
    header = {**header, "weights": reference.weights}  # fitted or equal: the reader sees which ranked the cases
    document = {"format": FORMAT, "version": SUPPORTED_VERSIONS[-1], **header, "scores": SCORE_MEANINGS, "cases": rows}
    with atomic_directory(out) as tmp:
        (tmp / "worklist.csv").write_text(csv_text(rows))
        (tmp / "worklist.json").write_text(json.dumps(document, indent=2, default=json_default) + "\n")
        (tmp / "index.html").write_text(html_page(rows, header))
        (tmp / "reference.json").write_text(json.dumps(reference.to_json(), indent=2) + "\n")
    return Path(out)
