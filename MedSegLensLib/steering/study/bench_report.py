"""The benchmark's tables, computed from the per-case records only (README and docs quote this file).

`write_tables` writes `results/table.md`, `results/summary.json` and
`results/per_case.csv`; it works on a partial run too and then says so in the
first line, with the number of cases done per cohort.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ...fileio import write_json_atomic, write_text_atomic
from .bench_candidates import BASELINES, METHODS, SAE_METHODS
from .bench_select import LABEL_FREE, SELECTIONS, case_score, choose
from .stats import holm, paired_bootstrap, sign_test, wilson

POOLED = "pooled"


def _pct(low: float, high: float) -> str:
    return f"[{100 * low:.0f}%, {100 * high:.0f}%]"


def _interval(values: tuple[float, float, float], digits: int = 3) -> str:
    mean, low, high = values
    if np.isnan(mean):
        return "—"
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def collect(bench) -> dict:
    """Records present on disk, and the fitted label-free rules (None before calibration is complete)."""
    calibration = bench.split_cases("calibration")
    have = {
        split: [bench.load(split, c) for c in bench.split_cases(split) if bench.record_path(split, c).exists()]
        for split in ("calibration", "test", "harm")
    }
    fitted = bench.fitted() if len(have["calibration"]) == len(calibration) else None
    planned = {name: len(cases) for name, cases in bench.cases.items() if bench.roles[name] != "train"}
    done = {
        name: sum(bench.record_path(bench.roles[name], c).exists() for c in cases)
        for name, cases in bench.cases.items()
        if bench.roles[name] != "train"
    }
    return {"records": have, "fitted": fitted, "planned": planned, "done": done}


def outcomes(records: list[dict], fitted: dict, regions, threshold: float = 0.5) -> list[dict]:
    """One row per (test case, method, selection): score before and after, failed, recovered, newly failing."""
    rows = []
    for record in records:
        fit = fitted[record["population"]]
        before = case_score(record["before"], regions)
        for method in METHODS:
            if not any(c["method"] == method for c in record["candidates"]):
                continue
            for selection in SELECTIONS:
                key, out = choose(record, method, selection, fit, regions)
                after = case_score(out, regions)
                rows.append(
                    {
                        "case_id": record["case_id"],
                        "population": record["population"],
                        "method": method,
                        "selection": selection,
                        "key": key,
                        "before": before,
                        "after": after,
                        "failed": before < threshold,
                        "fails_after": after < threshold,
                    }
                )
    return rows


def recovery_rows(rows: list[dict], populations: list[str]) -> list[dict]:
    table = []
    for population in populations + [POOLED]:
        for selection in SELECTIONS:
            for method in METHODS:
                mine = [
                    r
                    for r in rows
                    if r["method"] == method
                    and r["selection"] == selection
                    and (population == POOLED or r["population"] == population)
                ]
                if not mine:
                    continue
                failed = [r for r in mine if r["failed"]]
                ok = [r for r in mine if not r["failed"]]
                recovered = sum(not r["fails_after"] for r in failed)
                table.append(
                    {
                        "population": population,
                        "selection": selection,
                        "method": method,
                        "cases": len(mine),
                        "failures": len(failed),
                        "recovered": recovered,
                        "wilson": wilson(recovered, len(failed)),
                        "failure_score_before": float(np.mean([r["before"] for r in failed])) if failed else None,
                        "failure_score_after": float(np.mean([r["after"] for r in failed])) if failed else None,
                        "newly_failing": sum(r["fails_after"] for r in ok),
                        "not_failing": len(ok),
                    }
                )
    return table


def paired_rows(rows: list[dict], populations: list[str], protocol) -> list[dict]:
    """SAE methods minus each baseline on the same failing cases, with bootstrap intervals and sign tests."""
    replicates, seed = protocol.bootstrap
    index = {(r["case_id"], r["method"], r["selection"]): r for r in rows}
    table = []
    for population in populations + [POOLED]:
        for selection in SELECTIONS:
            for sae in SAE_METHODS:
                for baseline in BASELINES:
                    cases = sorted(
                        {
                            r["case_id"]
                            for r in rows
                            if r["failed"]
                            and r["method"] == sae
                            and r["selection"] == selection
                            and (population == POOLED or r["population"] == population)
                        }
                    )
                    pairs = [(index[(c, sae, selection)], index.get((c, baseline, selection))) for c in cases]
                    pairs = [(a, b) for a, b in pairs if b is not None]
                    if not pairs:
                        continue
                    recovery = [int(not a["fails_after"]) - int(not b["fails_after"]) for a, b in pairs]
                    change = [a["after"] - b["after"] for a, b in pairs]
                    plus, minus, p = sign_test(recovery)
                    dplus, dminus, dp = sign_test(change, tolerance=1e-9)
                    primary = (
                        population == POOLED
                        and selection == protocol.data["primary"]["selection"]
                        and sae == protocol.data["primary"]["method"]
                        and baseline == "logit-bias"
                    )
                    table.append(
                        {
                            "population": population,
                            "selection": selection,
                            "method": sae,
                            "baseline": baseline,
                            "failures": len(pairs),
                            "primary": primary,
                            "recovery_difference": paired_bootstrap(recovery, replicates, seed),
                            "recovery_sign": [plus, minus, p],
                            "score_difference": paired_bootstrap(change, replicates, seed),
                            "score_sign": [dplus, dminus, dp],
                        }
                    )
    secondary = [row for row in table if not row["primary"]]
    for row, adjusted in zip(secondary, holm([row["recovery_sign"][2] for row in secondary])):
        row["recovery_holm"] = adjusted
    for row, adjusted in zip(secondary, holm([row["score_sign"][2] for row in secondary])):
        row["score_holm"] = adjusted
    return table


def harm_rows(records: list[dict], protocol) -> list[dict]:
    """Each population's calibrated choice applied to adult and healthy cases."""
    groups: dict[tuple, list] = {}
    for record in records:
        for applied in record.get("applied", []):
            groups.setdefault(
                (applied["for_population"], applied["method"], applied["key"], record["population"]), []
            ).append((record, applied["outcome"]))
    table = []
    for (population, method, key, cohort), pairs in sorted(groups.items()):
        row = {"for_population": population, "method": method, "key": key, "cohort": cohort, "cases": len(pairs)}
        if cohort == "healthy":
            row["failing_before"] = sum(r["before"]["volume_ml"]["WT"] > protocol.healthy_ml for r, _ in pairs)
            row["failing_after"] = sum(o["volume_ml"]["WT"] > protocol.healthy_ml for _, o in pairs)
            row["mean_ml_before"] = float(np.mean([r["before"]["volume_ml"]["WT"] for r, _ in pairs]))
            row["mean_ml_after"] = float(np.mean([o["volume_ml"]["WT"] for _, o in pairs]))
        else:
            before = [case_score(r["before"], protocol.regions) for r, _ in pairs]
            after = [case_score(o, protocol.regions) for _, o in pairs]
            row["score_change"] = float(np.mean(np.subtract(after, before)))
            row["failing_before"] = sum(b < protocol.dice_below for b in before)
            row["failing_after"] = sum(a < protocol.dice_below for a in after)
        table.append(row)
    return table


def _progress(summary: dict) -> str:
    """Unsteered failures among the evaluated cases so far (calibration cases are development data)."""
    parts = [
        f"{split} {population}: {n[1]} of {n[0]} failing unsteered"
        for (split, population), n in sorted(summary.get("progress", {}).items())
    ]
    return (
        "Cases evaluated so far (unsteered failures, one definition): " + "; ".join(parts) + "."
        if parts
        else "No case evaluated yet."
    )


def markdown(summary: dict) -> str:
    b = summary["binding"]
    done, planned = summary["done"], summary["planned"]
    complete = all(done[k] >= planned[k] for k in planned)
    lines = [
        f"# Steering benchmark: {'complete' if complete else 'PARTIAL (not the final table)'}",
        "",
        f"Protocol `{b['path']}` sha256 `{b['sha256']}` (commit `{b['commit']}`); "
        f"cases done / planned: " + ", ".join(f"{k} {done[k]}/{planned[k]}" for k in planned) + ".",
        "",
    ]
    if summary["fitted"] is None:
        lines += [
            "Calibration is not complete: no selection can be fitted and no test result is reported yet.",
            "",
            _progress(summary),
        ]
        return "\n".join(lines) + "\n"
    lines += [
        "Failure: any of WT, TC, ET Dice < 0.5 (healthy: > 1 ml predicted). Recovered: a failing test case "
        "that no longer fails. Score = min(Dice WT, TC, ET). Oracle uses the test reference (upper bound); "
        "calibrated, tto and gated-calibrated are label-free on test cases.",
        "",
        "## Recovery of failing test cases",
        "",
        "| population | selection | method | test cases | failures | recovered [95 % Wilson] "
        "| failure score before → after | newly failing / not failing |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["recovery"]:
        before = (
            "—"
            if r["failure_score_before"] is None
            else (f"{r['failure_score_before']:.3f} → {r['failure_score_after']:.3f}")
        )
        lines.append(
            f"| {r['population']} | {r['selection']} | {r['method']} | {r['cases']} | {r['failures']} | "
            f"{r['recovered']}/{r['failures']} {_pct(*r['wilson'])} | {before} | "
            f"{r['newly_failing']}/{r['not_failing']} |"
        )
    lines += [
        "",
        "## Paired differences on the same failing cases (SAE method − baseline)",
        "",
        "Bootstrap 95 % intervals over cases; sign test two-sided (wins/losses, p); Holm over all rows but the "
        "primary one.",
        "",
        "| population | selection | method − baseline | failures | Δ recovered [95 % CI] | sign (p, Holm) "
        "| Δ score [95 % CI] | sign (p, Holm) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["paired"]:
        name = f"{'**PRIMARY** ' if r['primary'] else ''}{r['method']} − {r['baseline']}"
        rp, sp = r["recovery_sign"], r["score_sign"]
        rh = "primary" if r["primary"] else f"{r['recovery_holm']:.3g}"
        sh = "primary" if r["primary"] else f"{r['score_holm']:.3g}"
        lines.append(
            f"| {r['population']} | {r['selection']} | {name} | {r['failures']} | "
            f"{_interval(r['recovery_difference'])} | {rp[0]}/{rp[1]} ({rp[2]:.3g}, {rh}) | "
            f"{_interval(r['score_difference'])} | {sp[0]}/{sp[1]} ({sp[2]:.3g}, {sh}) |"
        )
    lines += ["", "## Calibrated choices", "", "| population | method | calibrated option |", "|---|---|---|"]
    for population, fit in summary["fitted"].items():
        for method, key in fit["calibrated"].items():
            lines.append(f"| {population} | {method} | {key} |")
    lines += [
        "",
        "## Harm: calibrated choices applied to adult and healthy cases",
        "",
        "| for population | method | option | cohort | cases | score change (adult) | failing before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary["harm"]:
        change = (
            f"{r['score_change']:+.3f}"
            if "score_change" in r
            else (f"{r['mean_ml_before']:.2f} → {r['mean_ml_after']:.2f} ml")
        )
        lines.append(
            f"| {r['for_population']} | {r['method']} | {r['key']} | {r['cohort']} | {r['cases']} | {change} "
            f"| {r['failing_before']} → {r['failing_after']} |"
        )
    return "\n".join(lines) + "\n"


def compact(summary: dict) -> str:
    """The README's table: per shifted population and selection, SAE against the best baseline (most recovered
    failures under that selection; chosen after the fact, so its Holm-corrected p is the honest one)."""
    b = summary["binding"]
    done, planned = summary["done"], summary["planned"]
    complete = all(done[k] >= planned[k] for k in planned)
    head = (
        f"Steering benchmark ({'complete' if complete else 'PARTIAL: not the final table'}; protocol sha256 "
        f"`{b['sha256'][:12]}`; test cases done: "
        + ", ".join(f"{k} {done[k]}/{planned[k]}" for k in planned if k.endswith("_test"))
        + ")"
    )
    if summary["fitted"] is None:
        return head + "\n\nCalibration is not complete: no test result yet.\n\n" + _progress(summary) + "\n"
    recovery = {(r["population"], r["selection"], r["method"]): r for r in summary["recovery"]}
    minimum = summary.get("minimum_failures")
    if minimum:
        counts = [
            (r["population"], r["failures"])
            for r in summary["recovery"]
            if r["selection"] == "oracle" and r["method"] == "sae" and r["population"] != POOLED
        ]
        head += "\n\nFailing test cases: " + ", ".join(
            f"{p} {n} ({'reaches' if n >= minimum else 'below'} the protocol's minimum of {minimum})" for p, n in counts
        )
    paired = {(r["population"], r["selection"], r["method"], r["baseline"]): r for r in summary["paired"]}
    lines = [
        head,
        "",
        "| population | selection | failures | SAE recovered [95 % CI] | best baseline: recovered "
        "| SAE − best baseline: Δ recovered [95 % CI] | Δ score [95 % CI] | sign p (Holm) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    populations = sorted({r["population"] for r in summary["recovery"]}, key=lambda p: (p == POOLED, p))
    for population in populations:
        for selection in ("calibrated", "oracle"):
            sae = recovery.get((population, selection, "sae"))
            if sae is None:
                continue
            best = max(
                (recovery[(population, selection, m)] for m in BASELINES if (population, selection, m) in recovery),
                key=lambda r: (r["recovered"], r["failure_score_after"] or 0),
            )
            pair = paired.get((population, selection, "sae", best["method"]))
            if pair is None:
                cells = ["—", "—", "—"]
            else:
                p = pair["recovery_sign"][2]
                holm_p = "primary" if pair["primary"] else f"{pair['recovery_holm']:.3g}"
                cells = [
                    _interval(pair["recovery_difference"]),
                    _interval(pair["score_difference"]),
                    f"{p:.3g} ({holm_p})",
                ]
            lines.append(
                f"| {population} | {selection} | {sae['failures']} | {sae['recovered']}/{sae['failures']} "
                f"{_pct(*sae['wilson'])} | {best['method']}: {best['recovered']}/{best['failures']} "
                f"{_pct(*best['wilson'])} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def write_tables(bench) -> Path:
    found = collect(bench)
    results = bench.out / "results"
    results.mkdir(parents=True, exist_ok=True)
    summary = {
        "binding": bench.binding,
        "planned": found["planned"],
        "done": found["done"],
        "fitted": found["fitted"],
        "label_free": list(LABEL_FREE),
        "minimum_failures": int(bench.protocol.data.get("minimum_failures", 0)),
    }
    progress: dict = {}
    for split in ("calibration", "test"):
        for record in found["records"][split]:
            n = progress.setdefault((split, record["population"]), [0, 0])
            n[0] += 1
            n[1] += case_score(record["before"], bench.protocol.regions) < bench.protocol.dice_below
    summary["progress"] = progress
    if found["fitted"] is not None:
        rows = outcomes(found["records"]["test"], found["fitted"], bench.protocol.regions, bench.protocol.dice_below)
        summary["recovery"] = recovery_rows(rows, bench.populations)
        summary["paired"] = paired_rows(rows, bench.populations, bench.protocol)
        summary["harm"] = harm_rows(found["records"]["harm"], bench.protocol)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["case_id"])
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(results / "per_case.csv", buffer.getvalue())
    write_json_atomic(results / "summary.json", {**summary, "progress": [[*k, *v] for k, v in progress.items()]})
    path = results / "table.md"
    write_text_atomic(path, markdown(summary))
    write_text_atomic(results / "readme_table.md", compact(summary))
    return path
