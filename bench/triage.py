"""The pre-registered triage benchmark (issue 17): SAE failure risk against label-free baselines on fresh cases.

    python bench/triage.py                      # the whole protocol; resumable (one record per case)
    python bench/triage.py --shard 0/2 & python bench/triage.py --shard 1/2    # measure cohorts in parallel
    python bench/triage.py --report             # only recompute the table from the records
    python bench/triage.py --report --partial   # the table from the test cases measured so far (says so)

Everything follows `bench/triage_protocol.json` (cohorts with fresh seeds and their roles, resolution, model
and SAE, score settings, the primary comparison, bootstrap count and seed). The command refuses a protocol
with uncommitted changes and a results folder written for another protocol (`OUT/protocol.json` holds its
sha256 and commit: MedSegLensLib.preregistration). Calibration cases are measured first and the
reference (rare and tumour latents, the risk's weights) is fit on them alone; test cases are then measured
and scored once. Every score is timed on every case in the same run. Outputs: `OUT/records/<case>.json`,
`OUT/reference.json`, `OUT/results/table.md`, `summary.json`, `per_case.csv`.
Default OUT: `$MEDSEGLENS_CACHE/triage-benchmark/<protocol name>`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path

import torch

from MedSegLensLib.data import discover_cohort
from MedSegLensLib.errors import InputError, MedSegLensError
from MedSegLensLib.fileio import write_json_atomic, write_text_atomic
from MedSegLensLib.models import load_model
from MedSegLensLib.paths import cache_dir
from MedSegLensLib.preregistration import FrozenProtocol, bind_results, check_committed
from MedSegLensLib.sae import check_sae_for_model, load_sae
from MedSegLensLib.steering.scales import sae_sha256
from MedSegLensLib.synth import ensure_cohort
from MedSegLensLib.triage import (
    SCORES,
    MeasureSettings,
    Reference,
    ReferenceSettings,
    check_disjoint,
    evaluate_scores,
    fit_reference,
    markdown_table,
    measure_case,
)

DEFAULT_PROTOCOL = Path(__file__).resolve().parent / "triage_protocol.json"


class TriageProtocol(FrozenProtocol):
    """The parsed triage protocol (loading, git check and results binding: `MedSegLensLib.preregistration`)."""

    REQUIRED = ("name", "cohorts", "resolution_mm", "model", "sae", "scores", "primary", "statistics")
    ROLES = ("calibration", "test")

    def cohorts(self, role: str | None = None) -> list[dict]:
        """Cohorts of a role (all without), in protocol order."""
        return [c for c in self.data["cohorts"] if role is None or c["role"] == role]


def _cohort_cases(protocol: TriageProtocol, out: Path, cohorts: list[dict], log) -> list:
    cases = []
    for cohort in cohorts:
        folder = out / "cohorts" / cohort["name"]
        ensure_cohort(
            folder,
            cohort["population"],
            cohort["cases"],
            cohort["seed"],
            spacing=float(protocol.data["resolution_mm"]),
            severity=float(protocol.data.get("severity", 1.0)),
            log=log,
        )
        cases += discover_cohort(folder, population=cohort["population"])
    return cases


def _records(model, sae, cases: list, out: Path, settings: MeasureSettings, log) -> list[dict]:
    """One record per case, measured once and kept (a rerun continues where it stopped)."""
    records = []
    for number, files in enumerate(cases):
        path = out / "records" / f"{files.case_id}.json"
        if not path.is_file():
            start = time.perf_counter()
            write_json_atomic(path, measure_case(model, sae, files, settings))
            log(f"[{number + 1}/{len(cases)}] {files.case_id} {time.perf_counter() - start:.1f} s")
        records.append(json.loads(path.read_text()))
    return records


def _per_case_csv(records: list[dict], reference: Reference) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case_id", "population", "failure", "failing_regions", *SCORES])
    for record in records:
        scores = reference.scores(record)
        writer.writerow(
            [
                record["case_id"],
                record["population"],
                int(record["failure"]),
                " ".join(record["failing_regions"]),
                *[round(scores[s], 6) for s in SCORES],
            ]
        )
    return buffer.getvalue()


def _interleaved(cases: list) -> list:
    """Test cases taking the populations in turn, so that a run stopped early has every population alike."""
    by_population: dict[str, list] = {}
    for case in cases:
        by_population.setdefault(case.population, []).append(case)
    rounds = max((len(v) for v in by_population.values()), default=0)
    return [group[n] for n in range(rounds) for group in by_population.values() if n < len(group)]


def run(
    protocol: TriageProtocol,
    out: Path,
    report_only: bool,
    log,
    shard: tuple[int, int] = (0, 1),
    partial: bool = False,
) -> str:
    commit = check_committed(protocol)
    binding = bind_results(protocol, out, commit)
    model = load_model(Path(protocol.data["model"]["dir"]).expanduser(), device="cpu")
    sae_dir = Path(protocol.data["sae"]["dir"]).expanduser()
    sae = load_sae(sae_dir)
    check_sae_for_model(sae, sae_dir, model)
    score_settings = protocol.data["scores"]
    measure = MeasureSettings(margin_mm=float(score_settings["margin_mm"]), tta=True)
    calibration = _cohort_cases(protocol, out, protocol.cohorts("calibration"), log)
    test = _interleaved(_cohort_cases(protocol, out, protocol.cohorts("test"), log))
    check_disjoint([c.case_id for c in calibration], [c.case_id for c in test])
    if shard != (0, 1):  # records do not depend on the reference: a shard measures its share of cases and stops
        mine = (calibration + test)[shard[0] :: shard[1]]
        _records(model, sae, mine, out, measure, log)
        return f"shard {shard[0]}/{shard[1]}: {len(mine)} records in {out / 'records'}; then run --report"
    measured = [c for c in test if (out / "records" / f"{c.case_id}.json").is_file()]
    if report_only and not partial:
        missing = [c.case_id for c in calibration + test if not (out / "records" / f"{c.case_id}.json").is_file()]
        if missing:
            raise InputError(f"{len(missing)} case(s) have no record yet (e.g. {missing[0]}); run without --report")
    if partial:
        test = measured
    calibration_records = _records(model, sae, calibration, out, measure, log)
    # the protocol's sae_risk is a logistic regression fit, whatever the number of calibration failures
    registered = ReferenceSettings(**score_settings["reference"], weights="fitted")
    reference = fit_reference(calibration_records, registered)
    reference.sae_sha256 = sae_sha256(sae_dir)  # so `medseglens triage --reference` accepts it for this SAE
    write_json_atomic(out / "reference.json", reference.to_json())
    test_records = _records(model, sae, test, out, measure, log)
    statistics = protocol.data["statistics"]
    summary = evaluate_scores(test_records, reference, int(statistics["bootstrap"]), int(statistics["bootstrap_seed"]))
    summary["protocol"] = binding
    summary["reference"] = {
        "rare_latents": len(reference.rare),
        "tumour_latents": len(reference.tumour_latents),
        "weights": dict(zip(("fvu_tumour", "fvu_brain", "ood_mass", "volume_disagreement"), reference.coef)),
        "calibration_failures": f"{sum(r['failure'] for r in calibration_records)}/{len(calibration_records)}",
    }
    summary["torch_threads"] = torch.get_num_threads()
    complete = len(test) == sum(c["cases"] for c in protocol.cohorts("test"))
    table = (
        ("" if complete else f"PARTIAL RUN: {len(test)} of the protocol's test cases have records.\n")
        + f"Triage benchmark {protocol.name} (protocol sha256 {binding['sha256'][:12]}, commit {commit[:12]}); "
        f"{len(test_records)} held-out cases, {len(calibration_records)} calibration cases "
        f"({summary['reference']['calibration_failures']} failed); s/case: median over the test cases, "
        f"{torch.get_num_threads()} torch thread(s), shared machine\n\n" + markdown_table(summary)
    )
    results = out / "results"
    write_text_atomic(results / "table.md", table)
    write_json_atomic(results / "summary.json", summary)
    write_text_atomic(results / "per_case.csv", _per_case_csv(test_records, reference))
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", type=Path, default=DEFAULT_PROTOCOL)
    parser.add_argument("--out", type=Path, help="results folder (default: the cache's triage-benchmark/NAME)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--report", action="store_true", help="only recompute the tables from existing records")
    parser.add_argument("--shard", default="0/1", help="I/N: measure every N-th case from the I-th, then stop")
    parser.add_argument(
        "--partial", action="store_true", help="with --report: the table from the test cases measured so far"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    protocol = TriageProtocol.load(args.protocol)
    out = args.out or cache_dir() / "triage-benchmark" / protocol.name
    shard = tuple(int(x) for x in args.shard.split("/"))
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    print(run(protocol, out, args.report, log, shard, args.partial))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MedSegLensError as error:
        print(f"triage: error: {error}", file=sys.stderr)
        sys.exit(2)
