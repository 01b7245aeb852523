"""Stage `cohorts`: the synthetic adult, pediatric, SSA and healthy cohorts (`medseglens synth`'s library call)."""

from __future__ import annotations

import json
from pathlib import Path

from ..report import Section, Table, write_section
from ..synth import ensure_cohort
from .settings import CohortSpec, DemoSettings
from .stages import StageContext

COHORTS_DIR = "cohorts"
SECTIONS_DIR = "sections"


def cohort_dir(work: Path, name: str) -> Path:
    return work / COHORTS_DIR / name


def cohort_folders(work: Path, specs: list[CohortSpec]) -> list[Path]:
    return [cohort_dir(work, spec.name) for spec in specs]


def section_dir(work: Path, stage: str) -> Path:
    """Where a stage whose library writes no report section keeps the demo's own."""
    return work / SECTIONS_DIR / stage


def _command(config: DemoSettings, spec: CohortSpec, out: Path) -> str:
    return (
        f"medseglens synth --population {spec.population} --cases {spec.cases} --seed {spec.seed} "
        f"--spacing {config.spacing:g} --severity {config.severity:g} --out {out}"
    )


def run_cohorts(ctx: StageContext) -> dict:
    """Generate each cohort not already complete (a resumed run keeps the finished ones)."""
    config, rows, made = ctx.config, [], {}
    for spec in config.cohorts:
        folder = cohort_dir(ctx.work, spec.name)
        ensure_cohort(folder, spec.population, spec.cases, spec.seed, config.spacing, config.severity, progress=True)
        record = json.loads((folder / "synth.json").read_text(encoding="utf-8"))
        made[spec.name] = {"population": spec.population, "cases": spec.cases, "seed": spec.seed, "role": spec.role}
        rows.append(
            [
                spec.name,
                spec.population,
                spec.role,
                spec.cases,
                spec.seed,
                record.get("spacing_mm"),
                record.get("generator_version"),
            ]
        )
    table = Table(
        "Synthetic cohorts",
        ["cohort", "population", "role", "cases", "seed", "spacing (mm)", "generator version"],
        rows,
        f"{COHORTS_DIR}/<cohort>/synth.json, written by `medseglens synth` with these seeds",
    )
    write_section(
        Section(
            "cohorts",
            "Stage cohorts: synthetic cohorts",
            [
                f"Cohorts built on the MNI ICBM152 anatomy at {config.spacing:g} mm (severity {config.severity:g}). "
                "Models "
                "train on the adult training cohort only; the pediatric and SSA calibration cohorts feed the SAEs' "
                "pooled "
                "activations and the label-free steering choices; test cohorts are held out."
            ],
            [table],
            command="; ".join(_command(config, s, cohort_dir(ctx.work, s.name)) for s in config.cohorts),
        ),
        section_dir(ctx.work, "cohorts"),
    )
    return made
