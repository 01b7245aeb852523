"""The study's tables (CSV + JSON), figures (PNG) and HTML report section, from the per-case records."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ...fileio import atomic_path, write_json_atomic
from ...report import Section, Table, write_section
from .evaluate import SCORED
from .figures import study_figures
from .selection import NONE, SELECTIONS, choose, methods_of
from .settings import HEALTHY_POPULATION, StudySettings
from .stats import describe, wilson

SELECTION_LABELS = {
    "oracle": "oracle (per case, reference)",
    "calibrated": "label-free: calibrated, blind",
    "entropy": "label-free: per case, min entropy",
    "volume": "label-free: per case, volume ratio",
}


FAILURE_REGIONS = ("WT", "TC", "ET")


def per_case_rows(records: list[dict], fitted: dict, settings: StudySettings) -> list[dict]:
    """One row per test case, method and selection: the chosen key and Dice before/after per region."""
    rows = []
    for record in records:
        population, region = record["population"], record["failure_region"]
        before = record["before"]["dice"]
        # one failure definition (shared/BRIEF.md): any of WT, TC, ET below the threshold; the study only
        # *targets* its population's region (selections optimise it)
        failed = min(before[r] for r in FAILURE_REGIONS) < settings.failure_dice
        for method in methods_of([record]):
            for selection in SELECTIONS:
                key, out = choose(record, method, selection, region, fitted[population])
                row = {
                    "case_id": record["case_id"],
                    "population": population,
                    "region": region,
                    "method": method,
                    "selection": selection,
                    "key": key,
                    "failure": failed,
                    "recovered": failed and min(out["dice"][r] for r in FAILURE_REGIONS) >= settings.failure_dice,
                }
                for name in SCORED:
                    row[f"before_{name}"], row[f"after_{name}"] = before[name], out["dice"][name]
                rows.append(row)
    return rows


def summary_rows(rows: list[dict]) -> list[dict]:
    """Per population, method and selection: mean Dice before/after, failures recovered (Wilson 95 %), harm."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["population"], row["region"], row["method"], row["selection"]), []).append(row)
    out = []
    for (population, region, method, selection), group in groups.items():
        delta = np.array([r[f"after_{region}"] - r[f"before_{region}"] for r in group])
        fail = [r for r in group if r["failure"]]
        kept = [r for r in group if not r["failure"]]
        recovered = sum(r["recovered"] for r in fail)
        low, high = wilson(recovered, len(fail))
        others = {
            name: float(np.mean([r[f"after_{name}"] - r[f"before_{name}"] for r in group]))
            for name in SCORED
            if name != region
        }
        out.append(
            {
                "population": population,
                "region": region,
                "method": method,
                "selection": selection,
                "cases": len(group),
                "failures": len(fail),
                "mean_before": float(np.mean([r[f"before_{region}"] for r in group])),
                "mean_after": float(np.mean([r[f"after_{region}"] for r in group])),
                "failures_mean_before": float(np.mean([r[f"before_{region}"] for r in fail])) if fail else float("nan"),
                "failures_mean_after": float(np.mean([r[f"after_{region}"] for r in fail])) if fail else float("nan"),
                "recovered": recovered,
                "recovered_rate": recovered / len(fail) if fail else float("nan"),
                "recovered_ci_low": low,
                "recovered_ci_high": high,
                "non_failures_mean_delta": float(np.mean([r[f"after_{region}"] - r[f"before_{region}"] for r in kept]))
                if kept
                else float("nan"),
                "worsened_fraction": float((delta < -0.01).mean()),
                "steered_fraction": float(np.mean([r["key"] != NONE for r in group])),
                **{f"other_{k}_mean_delta": v for k, v in others.items()},
                "delta": describe(delta),
            }
        )
    return sorted(out, key=lambda r: (r["population"], r["selection"] != "oracle", r["selection"], r["method"]))


def offtarget_rows(records: list[dict]) -> list[dict]:
    """Calibrated interventions on adult (Dice change) and healthy cases (false-positive volume)."""
    groups: dict[tuple, list[tuple[dict, dict]]] = {}
    for record in records:
        for applied in record["applied"]:
            groups.setdefault(
                (applied["for_population"], applied["method"], applied["key"], record["population"]), []
            ).append((record, applied))
    out = []
    for (for_population, method, key, population), group in sorted(groups.items()):
        row = {
            "steering_for": for_population,
            "method": method,
            "key": key,
            "applied_to": population,
            "cases": len(group),
        }
        if population == HEALTHY_POPULATION:
            before = [r["before"]["volume_ml"]["WT"] for r, _ in group]
            after = [a["outcome"]["volume_ml"]["WT"] for _, a in group]
            row.update(
                {
                    "false_positive_ml_before": float(np.mean(before)),
                    "false_positive_ml_after": float(np.mean(after)),
                    "cases_with_false_positive_before": int(sum(v > 0 for v in before)),
                    "cases_with_false_positive_after": int(sum(v > 0 for v in after)),
                }
            )
        else:
            for name in ("WT", "TC", "ET"):
                row[f"delta_{name}"] = float(
                    np.mean([a["outcome"]["dice"][name] - r["before"]["dice"][name] for r, a in group])
                )
        out.append(row)
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns and not isinstance(row[k], dict)]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _fmt_rate(s: dict) -> str:
    interval = f"[{s['recovered_ci_low']:.0%}, {s['recovered_ci_high']:.0%}]"
    return f"{s['recovered']}/{s['failures']} = {s['recovered_rate']:.0%} {interval}"


def write_report(out: Path, records: dict[str, list[dict]], fitted: dict, settings: StudySettings, study: dict) -> Path:
    test, offtarget = records["test"], records["offtarget"]
    populations = sorted({r["population"] for r in test})
    rows = per_case_rows(test, fitted, settings)
    summary = summary_rows(rows)
    off = offtarget_rows(offtarget)
    tables = out / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    write_csv(tables / "per_case.csv", rows)
    write_csv(tables / "summary.csv", summary)
    write_csv(tables / "offtarget.csv", off)
    write_json_atomic(
        tables / "summary.json",
        {"summary": summary, "offtarget": off, "fitted": fitted, "settings": settings.to_json()},
    )
    figures = study_figures(out, rows, summary, test, populations, settings)
    recovery = Table(
        "Failure recovery (test cases)",
        [
            "population",
            "region",
            "selection",
            "method",
            "cases",
            "mean Dice before",
            "after",
            "failures: before",
            "after",
            "recovered [95 % CI]",
            "Δ non-failures",
            "worsened",
            "steered",
        ],
        [
            [
                s["population"],
                s["region"],
                SELECTION_LABELS[s["selection"]],
                s["method"],
                s["cases"],
                s["mean_before"],
                s["mean_after"],
                s["failures_mean_before"],
                s["failures_mean_after"],
                _fmt_rate(s),
                s["non_failures_mean_delta"],
                f"{s['worsened_fraction']:.0%}",
                f"{s['steered_fraction']:.0%}",
            ]
            for s in summary
        ],
        "tables/summary.csv",
        note=f"A failure is a case with any of WT, TC, ET Dice below {settings.failure_dice}; recovered = all three "
        f"reach {settings.failure_dice} or above. Dice columns and selections use the population's target "
        f"region. Every method searched {settings.budget} candidates per case inside the "
        f"predicted tumour + {settings.margin_mm:g} mm. Oracle rows use the case's reference; the others do not.",
    )
    calibrated = Table(
        "Label-free choices fitted on the calibration cases",
        ["population", "method", "calibrated candidate", "volume-ratio target (ref/pred)", "calibration cases"],
        [
            [
                p,
                m,
                k,
                "—" if f["volume_target"] is None else f"{np.exp(f['volume_target']):.2f}",
                f["calibration_cases"],
            ]
            for p, f in fitted.items()
            for m, k in f["calibrated"].items()
        ],
        "tables/summary.json (fitted)",
    )
    off_table = Table(
        "Off-target: calibrated interventions on adult and healthy cases",
        [
            "steering for",
            "method",
            "candidate",
            "applied to",
            "cases",
            "Δ WT",
            "Δ TC",
            "Δ ET",
            "healthy FP ml before",
            "after",
        ],
        [
            [
                o["steering_for"],
                o["method"],
                o["key"],
                o["applied_to"],
                o["cases"],
                o.get("delta_WT", "—"),
                o.get("delta_TC", "—"),
                o.get("delta_ET", "—"),
                o.get("false_positive_ml_before", "—"),
                o.get("false_positive_ml_after", "—"),
            ]
            for o in off
        ],
        "tables/offtarget.csv",
    )
    saes = ", ".join(f"{s['folder']} ({s['layer']})" for s in study["saes"])
    section = Section(
        key="steering-recovery",
        title="Steering: failure recovery",
        paragraphs=[
            f"Model {study['model']} (sha256 {study['model_sha256'][:12]}); SAEs {saes}. Interventions act inside the "
            f"predicted tumour grown by {settings.margin_mm:g} mm (a uniform shift is largely removed by instance "
            "normalisation). Methods, each with the same budget of candidates per case: SAE latents (additive, the "
            "population-specific latents by firing-frequency log-ratio between adult and the population in the SAE's "
            "training store, signed towards adult use), the mean-difference vector between adult and the population "
            "at the same layer, random directions of matched norm, and a per-class logit bias (no SAE).",
            "Population-specific and shared latents are labelled by the firing-frequency log-ratio computed from the "
            "store metadata, not by the diffing package.",
            "Oracle selection uses each case's reference segmentation (the paper's protocol) and is an upper bound, "
            "not a usable method. Label-free selections never see a test case's reference.",
        ],
        tables=[recovery, calibrated, off_table],
        figures=figures,
        command=f"medseglens study --model {study['model']} --sae {' '.join(s['folder'] for s in study['saes'])} "
        f"--data ... --out {out}",
    )
    return write_section(section, out)
