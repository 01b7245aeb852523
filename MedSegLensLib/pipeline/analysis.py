"""Stages `interpret_<arch>`, `diffing` and `steering`: the analyses, through their own public commands and APIs.

Interpretation and diffing run their `medseglens` commands in this process
(the same code path, options and outputs as on the command line); the
steering study is the steering package's `run_recovery_study`.
"""

from __future__ import annotations

from pathlib import Path

from ..steering.study import run_recovery_study
from .cohorts import cohort_folders
from .sae_stages import sae_dir, store_dir
from .stages import StageContext
from .training import model_dir

INTERPRET_DIR = "interpret"
DIFFING_DIR = "diffing"
STEERING_DIR = "steering"


def run_command(argv: list[str]) -> int:
    """Run one `medseglens` command in this process; its expected errors propagate (the caller reports them)."""
    from ..cli.main import build_parser

    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


def interpret_dir(work: Path, architecture: str) -> Path:
    return work / INTERPRET_DIR / architecture


def labels_file(work: Path, architecture: str) -> Path:
    return interpret_dir(work, architecture) / "latents.json"


def _paths(paths) -> list[str]:
    return [str(p) for p in paths]


def interpret_stage(architecture: str):
    def run(ctx: StageContext) -> dict:
        out = interpret_dir(ctx.work, architecture)
        run_command(["interpret", "--model", str(model_dir(ctx.work, architecture)),
                     "--sae", str(sae_dir(ctx.work, architecture)),
                     "--data", *_paths(cohort_folders(ctx.work, ctx.config.role("test"))),
                     "--out", str(out), "--cards", str(ctx.config.interpret_cards), "--device", "cpu", "--overwrite"])
        return {"folder": str(out)}
    return run


def diffing_folders(work: Path, architectures: tuple[str, ...]) -> list[Path]:
    """The diffing stage's output folders (each with its report section), in report order."""
    folders = [work / DIFFING_DIR / f"populations-{a}" for a in architectures]
    return folders + ([work / DIFFING_DIR / "architectures"] if len(architectures) >= 2 else [])


def run_diffing(ctx: StageContext) -> dict:
    """Shared vs population-specific latents per SAE, then latent matching across the two architectures."""
    config, work = ctx.config, ctx.work
    for architecture in config.architectures:
        run_command(["diff", "populations", "--sae", str(sae_dir(work, architecture)),
                     "--store", str(store_dir(work, architecture)), "--bootstrap", str(config.diff_bootstrap),
                     "--labels", str(labels_file(work, architecture)), "--seed", str(config.seed),
                     "--out", str(work / DIFFING_DIR / f"populations-{architecture}"), "--overwrite"])
    if len(config.architectures) >= 2:
        a, b = config.architectures[:2]
        run_command(["diff", "archs", "--model-a", str(model_dir(work, a)), "--sae-a", str(sae_dir(work, a)),
                     "--model-b", str(model_dir(work, b)), "--sae-b", str(sae_dir(work, b)),
                     "--data", *_paths(cohort_folders(work, config.role("test"))),
                     "--max-cases", str(config.diff_arch_cases), "--permutations", str(config.diff_permutations),
                     "--labels-a", str(labels_file(work, a)), "--labels-b", str(labels_file(work, b)),
                     "--seed", str(config.seed), "--out", str(work / DIFFING_DIR / "architectures"), "--overwrite"])
    return {"folders": [str(f) for f in diffing_folders(work, config.architectures)]}


def run_steering(ctx: StageContext) -> dict:
    """The reduced recovery study on the steering architecture: oracle and label-free selection, with baselines."""
    config, work = ctx.config, ctx.work
    architecture = config.steering_architecture
    section = run_recovery_study(model_dir(work, architecture), [sae_dir(work, architecture)],
                                 cohort_folders(work, config.role("test")), work / STEERING_DIR, config.study,
                                 calibration=cohort_folders(work, config.role("calibration")))
    return {"architecture": architecture, "section": str(section)}
