"""Stages `interpret_<arch>`, `diffing` and `steering`: the analyses, through their packages' study functions.

`interpret_sae`, `population_study` / `architecture_study` and `run_recovery_study`
are what the `interpret`, `diff` and `steer study` commands call, so the demo's
outputs are the commands' outputs.
"""

from __future__ import annotations

from pathlib import Path

from ..diffing import ArchDiffSettings, PopulationDiffSettings, architecture_study, population_study
from ..interpret.sae_run import interpret_sae
from ..progress import StageBars
from ..steering.study import run_recovery_study
from .backbone_stages import model_dir
from .cohorts import cohort_folders
from .sae_stages import sae_dir, store_dir
from .stages import StageContext

INTERPRET_DIR = "interpret"
DIFFING_DIR = "diffing"
STEERING_DIR = "steering"


def interpret_dir(work: Path, architecture: str) -> Path:
    return work / INTERPRET_DIR / architecture


def labels_file(work: Path, architecture: str) -> Path:
    return interpret_dir(work, architecture) / "latents.json"


def interpret_stage(architecture: str):
    def run(ctx: StageContext) -> dict:
        out = interpret_sae(
            model_dir(ctx.work, architecture),
            sae_dir(ctx.work, architecture),
            cohort_folders(ctx.work, ctx.config.role("test")),
            interpret_dir(ctx.work, architecture),
            cards=ctx.config.interpret_cards,
            device="cpu",
            overwrite=True,
        )
        return {"folder": str(out)}

    return run


def diffing_folders(work: Path, architectures: tuple[str, ...]) -> list[Path]:
    """The diffing stage's output folders (each with its report section), in report order."""
    folders = [work / DIFFING_DIR / f"populations-{a}" for a in architectures]
    return folders + ([work / DIFFING_DIR / "architectures"] if len(architectures) >= 2 else [])


def run_diffing(ctx: StageContext) -> dict:
    """Shared vs population-specific latents per SAE, then latent matching across the two architectures."""
    config, work = ctx.config, ctx.work
    summaries = {}
    for architecture in config.architectures:
        with StageBars() as bars:
            record = population_study(
                sae_dir(work, architecture),
                store_dir(work, architecture),
                work / DIFFING_DIR / f"populations-{architecture}",
                settings=PopulationDiffSettings(n_boot=config.diff_bootstrap, seed=config.seed),
                labels=labels_file(work, architecture),
                overwrite=True,
                progress=bars,
            )
        summaries[f"populations-{architecture}"] = record["summary"]
    if len(config.architectures) >= 2:
        a, b = config.architectures[:2]
        settings = ArchDiffSettings(seed=config.seed, n_permutations=config.diff_permutations)
        with StageBars() as bars:
            record = architecture_study(
                model_dir(work, a),
                sae_dir(work, a),
                model_dir(work, b),
                sae_dir(work, b),
                cohort_folders(work, config.role("test")),
                work / DIFFING_DIR / "architectures",
                max_cases=config.diff_arch_cases,
                settings=settings,
                labels_a=labels_file(work, a),
                labels_b=labels_file(work, b),
                overwrite=True,
                progress=bars,
            )
        summaries["architectures"] = record["summary"]
    return summaries


def run_steering(ctx: StageContext) -> dict:
    """The reduced recovery study on the steering architecture: oracle and label-free selection, with baselines."""
    config, work = ctx.config, ctx.work
    architecture = config.steering_architecture
    section = run_recovery_study(
        model_dir(work, architecture),
        [sae_dir(work, architecture)],
        cohort_folders(work, config.role("test")),
        work / STEERING_DIR,
        config.study,
        calibration=cohort_folders(work, config.role("calibration")),
    )
    return {"architecture": architecture, "section": str(section)}
