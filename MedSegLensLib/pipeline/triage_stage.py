"""Stage `triage`: the held-out test cases ranked by SAE failure risk (issue 17), for the report and the viewer.

The risk's weights are fit on labelled cases the demo never evaluates on, covering every population it ranks,
as in the held-out benchmark (`bench/triage_protocol.json`): the adult training cases the SAE did not see
(after the first `sae_adult_cases`: the SAE's own have in-sample reconstruction error), the calibration
cohorts, and a small healthy cohort this stage generates (the demo has no healthy calibration cohort; without
one the risk ranked every healthy case first, docs/triage.md). Every test case is ranked (`triage.triage`,
the library call behind `medseglens triage`). The worklist goes to `triage/`, which the `latent_maps` stage
names in `workspace.json`, so the viewer opens on rank 1 with its Why panel. The section gives the
AUROC/AUPRC table (pooled and per population, bootstrap intervals) and the worklist's top rows.
The worklist's top latents carry the descriptions of the `interpret_<arch>` stage's latents.json (the demo's SAE
folder holds none).
A calibration set the risk cannot be fit on (e.g. no success among tiny-setting cases) gives a section that
says so and no worklist, not a failed demo.
"""

from __future__ import annotations

from pathlib import Path

from ..data import CaseFiles
from ..errors import InputError
from ..progress import StageBars
from ..report import Section, Table, write_section
from ..triage.reference import EVENTS_PER_FEATURE, Reference
from .analysis import labels_file
from .backbone_stages import model_dir
from .cohorts import cohort_folders, section_dir
from .sae_stages import sae_dir
from .stages import StageContext

TRIAGE_DIR = "triage"
HEALTHY_CALIBRATION_DIR = "triage_calibration_healthy"
HEALTHY_CALIBRATION_CASES = 4
HEALTHY_CALIBRATION_SEED = 108  # after the demo cohorts' 101-107; used nowhere else
TOP_ROWS = 10


def worklist_folder(work: Path) -> Path:
    return work / TRIAGE_DIR


def _interval(triple) -> str:
    value, low, high = triple
    return "n/a" if value is None else f"{value:.2f} [{low:.2f}, {high:.2f}]"


def auroc_table(summary: dict) -> Table:
    """One row per group (pooled, each population) and score, from `triage.evaluate_scores`."""
    rows = []
    for group, result in summary["groups"].items():
        for score, row in result["scores"].items():
            difference = result["differences"].get(score)
            rows.append(
                [
                    group,
                    f"{result['n']} ({result['failures']})",
                    score + (" (best baseline)" if score == result["best_baseline"] else ""),
                    _interval(row["auroc"]),
                    _interval(row["auprc"]),
                    "" if score == "sae_risk" or difference is None else _interval(difference),
                    round(summary["seconds_per_case"].get(score, float("nan")), 3),
                ]
            )
    return Table(
        "Failure prediction on the held-out test cases",
        ["group", "n (failures)", "score", "AUROC [95 % CI]", "AUPRC [95 % CI]", "AUROC SAE − score", "s/case"],
        rows,
        f"{TRIAGE_DIR}/worklist.json records; triage.evaluate_scores, {summary['replicates']} bootstrap resamples",
    )


def worklist_table(rows: list[dict]) -> Table:
    return Table(
        f"Worklist: the {min(TOP_ROWS, len(rows))} cases most at risk",
        ["rank", "case", "population", "SAE risk", "top latents", "failed (reference)"],
        [
            [
                row["rank"],
                row["case_id"],
                row["population"],
                round(row["risk"], 3),
                ", ".join(str(top["latent"]) for top in row["top_latents"]),
                "—" if row["failure"] is None else ("yes" if row["failure"] else "no"),
            ]
            for row in rows[:TOP_ROWS]
        ],
        f"{TRIAGE_DIR}/worklist.json (also worklist.csv and index.html)",
    )


def weights_sentence(reference: Reference, calibration: list[CaseFiles]) -> str:
    """Which weights ranked the cases, and the calibration failures per population (a fit learns only these)."""
    sizes = {p: sum(c.population == p for c in calibration) for p in sorted({c.population for c in calibration})}
    failed = {p: round(reference.failure_rates[p] * n) for p, n in sizes.items()}
    return (
        f"The risk's weights: {reference.weights} (fitted only with at least {EVENTS_PER_FEATURE} calibration "
        f"failures per feature, docs/triage.md); calibration failures: {sum(failed.values())} of {len(calibration)} "
        f"({', '.join(f'{p} {n} of {sizes[p]}' for p, n in failed.items())})."
    )


def run_triage(ctx: StageContext) -> dict:
    from ..data import discover_cohorts
    from ..diffing.labels import label_text, read_labels
    from ..models import load_model
    from ..sae import check_sae_for_model, load_sae
    from ..steering.scales import sae_sha256
    from ..synth import ensure_cohort
    from ..triage import evaluate_scores, triage, worklist_rows, write_worklist

    config, work = ctx.config, ctx.work
    architecture = config.steering_architecture
    folder = sae_dir(work, architecture)
    model = load_model(model_dir(work, architecture), device="cpu")
    sae = load_sae(folder)
    layer = check_sae_for_model(sae, folder, model)
    adult = discover_cohorts(cohort_folders(work, config.role("train")))[config.sae_adult_cases :]
    healthy = work / HEALTHY_CALIBRATION_DIR
    ensure_cohort(
        healthy, "healthy", HEALTHY_CALIBRATION_CASES, HEALTHY_CALIBRATION_SEED, config.spacing, config.severity
    )
    calibration = adult + discover_cohorts([*cohort_folders(work, config.role("calibration")), healthy])
    cases = discover_cohorts(cohort_folders(work, config.role("test")))
    command = (
        f"medseglens triage --model {model_dir(work, architecture)} --sae {folder} --data "
        + " ".join(str(p) for p in cohort_folders(work, config.role("test")))
        + " --calibration "
        + " ".join(str(p) for p in [*cohort_folders(work, config.role("calibration")), healthy])
        + f" --labels {labels_file(work, architecture)} --out {worklist_folder(work)}"
        f"  (the stage adds the adult training cases after the SAE's first {config.sae_adult_cases} to the "
        "calibration cases)"
    )
    title = f"Stage triage: which cases to look at first ({architecture}, SAE failure risk)"
    try:
        with StageBars() as bars:  # one bar for the calibration cases, one for the ranked cases
            result = triage(model, sae, cases, calibration, progress=bars)
    except InputError as exc:
        paragraph = f"No worklist: the SAE risk could not be fit on the {len(calibration)} calibration cases ({exc})."
        write_section(Section("triage", title, [paragraph], command=command), section_dir(work, "triage"))
        return {"ranked": 0, "note": str(exc)}
    labels = read_labels(labels_file(work, architecture))
    rows = worklist_rows(result.records, result.reference, {j: label_text(labels, j) for j in labels})
    result.reference.sae_sha256 = sae_sha256(folder)
    header = {
        "model": {"fingerprint": model.fingerprint, "architecture": architecture},
        "sae": {"layer": layer, "sha256": result.reference.sae_sha256, "n_latents": sae.n_latents},
    }
    write_worklist(worklist_folder(work), rows, header, result.reference)
    summary = evaluate_scores(result.records, result.reference, config.diff_bootstrap, config.seed)
    paragraph = (
        f"{len(rows)} held-out test cases ranked by the SAE failure risk, fit on {len(calibration)} labelled cases "
        "the demo does not evaluate on (adult training cases the SAE did not see, the calibration cohorts and "
        f"{HEALTHY_CALIBRATION_CASES} generated healthy cases); beside it "
        "the label-free baselines measured in the same pass (docs/triage.md). A pooled score can win by "
        "recognising the population, so read the per-population rows. The viewer opens this worklist's rank 1. "
        + weights_sentence(result.reference, calibration)
    )
    write_section(
        Section("triage", title, [paragraph], [auroc_table(summary), worklist_table(rows)], command=command),
        section_dir(work, "triage"),
    )
    return {"ranked": len(rows), "most_at_risk": rows[0]["case_id"] if rows else None}
