"""Stages `train_<arch>` and `evaluate`: adult-trained backbones and their failure map on the held-out cohorts."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from ..fileio import write_text_atomic
from ..models import (
    TrainingSettings,
    default_config,
    evaluate_model,
    labelled_cases,
    load_model,
    tiny_config,
    train_model,
    write_evaluation,
)
from ..models.evaluation import FALSE_POSITIVE_ML, csv_text, format_summary, summarise_by_population
from ..models.failure_map import failure_rows, markdown_table, plot_failure_map
from ..models.storage import MODEL_JSON
from ..progress import TrainingBar, case_bar
from ..report import Figure, Section, Table, write_section
from .cohorts import cohort_folders, section_dir
from .stages import StageContext

MODELS_DIR = "models"
EVALUATION_DIR = "evaluation"
FAILURE_COLUMNS = ["architecture", "case_id", "population", "regions", "dice_WT", "dice_TC", "dice_ET"]


def model_dir(work: Path, architecture: str) -> Path:
    return work / MODELS_DIR / architecture


def scores_csv(work: Path, architecture: str) -> Path:
    return work / EVALUATION_DIR / f"{architecture}_scores.csv"


def read_scores(work: Path, architecture: str) -> list[dict]:
    """The evaluate stage's per-case rows of one architecture (Dice as floats, empty cells as None)."""
    with open(scores_csv(work, architecture), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key, value in row.items():
            if key.startswith(("dice_", "hd95_")) or key.endswith("_ml"):
                row[key] = float(value) if value not in ("", "nan", None) else None
    return rows


def train_stage(architecture: str):
    """The `train_<arch>` stage's work: the default (or tiny) network on the adult training cohort."""

    def run(ctx: StageContext) -> dict:
        config, out = ctx.config, model_dir(ctx.work, architecture)
        epochs = config.epochs_of(architecture)
        if not (ctx.resume and (out / MODEL_JSON).is_file()):  # a resumed stage whose training had finished
            network = (tiny_config if config.model_size == "tiny" else default_config)(architecture)
            settings = TrainingSettings(epochs=epochs, seed=config.training_seed, val_every=config.val_every)
            bar = TrainingBar(f"train {architecture}")
            try:
                train_model(
                    network,
                    labelled_cases(cohort_folders(ctx.work, config.role("train"))),
                    out,
                    settings,
                    progress=bar,
                    resume=True,
                )
            finally:
                bar.close()
        model = load_model(out, device="cpu")
        history = model.provenance.get("history", [])
        summary = {
            "architecture": architecture,
            "epochs": epochs,
            "fingerprint": model.fingerprint,
            "parameters": model.provenance.get("parameters"),
            "training_minutes": round(model.provenance.get("elapsed_s", 0.0) / 60, 2),
            "final_val_dice": next((h["val_dice"] for h in reversed(history) if h.get("val_dice") is not None), None),
        }
        _training_section(ctx, summary)
        return summary

    return run


def _training_section(ctx: StageContext, summary: dict) -> None:
    architecture = summary["architecture"]
    folder = model_dir(ctx.work, architecture)
    val = summary["final_val_dice"]
    rows = [
        [
            architecture,
            ctx.config.model_size,
            summary["parameters"],
            summary["epochs"],
            summary["training_minutes"],
            "—" if val is None else round(val, 3),
            summary["fingerprint"][:12],
        ]
    ]
    write_section(
        Section(
            f"train_{architecture}",
            f"Stage train_{architecture}: {architecture} on the adult cohort",
            [
                f"Trained on the adult training cohort only (a seeded {TrainingSettings().val_fraction:.0%} held out "
                "for "
                "validation); the weights and their provenance are in " + f"{MODELS_DIR}/{architecture}/."
            ],
            [
                Table(
                    "Training",
                    [
                        "architecture",
                        "size",
                        "parameters",
                        "epochs",
                        "minutes",
                        "validation Dice (mean of WT, TC, ET)",
                        "weights sha256",
                    ],
                    rows,
                    f"{MODELS_DIR}/{architecture}/model.json",
                )
            ],
            command=f"medseglens train --arch {architecture} --epochs {summary['epochs']} --data "
            f"{' '.join(str(p) for p in cohort_folders(ctx.work, ctx.config.role('train')))} --out {folder}",
        ),
        section_dir(ctx.work, f"train_{architecture}"),
    )


def run_evaluate(ctx: StageContext) -> dict:
    """Score every architecture on the test cohorts; write the failure map (table, figure, failures.csv)."""
    config, out = ctx.config, ctx.work / EVALUATION_DIR
    cases = labelled_cases(cohort_folders(ctx.work, config.role("test")))
    results: dict[str, list[dict]] = {}
    seconds = {}
    for architecture in config.architectures:
        model = load_model(model_dir(ctx.work, architecture), device="cpu")
        start = time.perf_counter()
        with case_bar(f"evaluate {architecture}", len(cases)) as bar:
            rows = evaluate_model(model, cases, progress=lambda done, total, row: bar.update(1))
        seconds[architecture] = round((time.perf_counter() - start) / len(rows), 2)
        write_evaluation(rows, scores_csv(ctx.work, architecture), config.failure_dice)
        print(f"\n{architecture}\n{format_summary(summarise_by_population(rows, config.failure_dice))}")
        results[architecture] = rows
    table = markdown_table(results, config.failure_dice)
    write_text_atomic(out / "failure_map.md", table)
    failures = failure_rows(results, config.failure_dice)
    write_text_atomic(out / "failures.csv", csv_text(failures, FAILURE_COLUMNS))
    plot_failure_map(results, out / "failure_map.png", config.failure_dice)
    _write_sections(ctx, results, seconds)
    return {
        "failures": {
            arch: {
                pop: sum(1 for f in failures if f["architecture"] == arch and f["population"] == pop)
                for pop in sorted({r["population"] for r in rows})
            }
            for arch, rows in results.items()
        },
        "cases": len(cases),
        "seconds_per_case": seconds,
    }


def _write_sections(ctx: StageContext, results: dict[str, list[dict]], seconds: dict[str, float]) -> None:
    config, out = ctx.config, ctx.work / EVALUATION_DIR
    lines = [line for line in (out / "failure_map.md").read_text(encoding="utf-8").splitlines() if line.strip()]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    source = f"{EVALUATION_DIR}/<arch>_scores.csv (per-case Dice on the held-out cohorts)"
    write_section(
        Section(
            "evaluate",
            "Stage evaluate: failure map",
            [
                f"Adult-trained models on held-out cohorts; a failure is a case with any region's Dice below "
                f"{config.failure_dice:g}. Healthy cases score Dice 1 only when nothing is predicted (BraTS "
                "convention), "
                f"so a healthy case fails only when over {FALSE_POSITIVE_ML:g} ml of tumour is predicted. "
                "Seconds per case (read, segment, score): "
                + ", ".join(f"{a} {s:.2f}" for a, s in seconds.items())
                + "."
            ],
            [Table("Failure map", header, rows, source)],
            [Figure("failure_map.png", "Per-case Dice by population and architecture", source)],
            command="medseglens evaluate --model MODEL_DIR --data "
            + " ".join(str(p) for p in cohort_folders(ctx.work, config.role("test")))
            + " --out SCORES.csv",
        ),
        out,
    )
