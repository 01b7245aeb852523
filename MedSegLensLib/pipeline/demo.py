"""The main demo job as a graph of cached stages, and the entry point that runs it (then serves or reports).

cohorts -> train_<arch> -> evaluate (failure map)
        -> sae_extract_<arch> -> sae_train_<arch> -> interpret_<arch> -> diffing
        -> steering (recovery study), triage (held-out worklist) -> latent_maps (+ workspace.json) -> report
"""

from __future__ import annotations

import os
from pathlib import Path

from .analysis import STEERING_DIR, diffing_folders, interpret_dir, interpret_stage, run_diffing, run_steering
from .backbone_stages import EVALUATION_DIR, MODELS_DIR, run_evaluate, train_stage
from .cohorts import COHORTS_DIR, SECTIONS_DIR, run_cohorts, section_dir
from .report_stage import REPORT_DIR, report_stage
from .sae_stages import STORES_DIR, extract_stage, sae_outputs, train_sae_stage
from .settings import DemoSettings
from .stages import Stage, StageResult, run_stages
from .triage_stage import HEALTHY_CALIBRATION_DIR, TRIAGE_DIR, run_triage
from .workspace_stage import LATENTS_DIR, PREDICTIONS_DIR, run_latent_maps

EVALUATE = "evaluate"


def _section(name: str) -> str:
    return f"{SECTIONS_DIR}/{name}"


def build_stages(config: DemoSettings) -> list[Stage]:
    """Every stage of the demo, dependencies first."""
    archs = config.architectures
    stages = [
        Stage(
            "cohorts",
            "synthetic adult, pediatric, SSA and healthy cohorts",
            run_cohorts,
            uses=("spacing", "severity", "cohorts"),
            outputs=(COHORTS_DIR, _section("cohorts")),
        )
    ]
    for a in archs:
        stages.append(
            Stage(
                f"train_{a}",
                f"train the {a} on the adult cohort",
                train_stage(a),
                ("cohorts",),
                ("model_size", "epochs", "training_seed", "val_every"),
                (f"{MODELS_DIR}/{a}", _section(f"train_{a}")),
            )
        )
    stages.append(
        Stage(
            EVALUATE,
            "held-out Dice and the failure map",
            run_evaluate,
            ("cohorts", *[f"train_{a}" for a in archs]),
            ("failure_dice",),
            (EVALUATION_DIR,),
        )
    )
    for a in archs:
        stages += [
            Stage(
                f"sae_extract_{a}",
                f"capture {a} activations at the SAE layer",
                extract_stage(a),
                ("cohorts", f"train_{a}"),
                (f"sae_layer:{a}", "sae_adult_cases", "sae_quota_scale", "seed"),
                (f"{STORES_DIR}/{a}", _section(f"sae_extract_{a}")),
            ),
            Stage(
                f"sae_train_{a}",
                f"train the {a} SAE",
                train_sae_stage(a),
                (f"sae_extract_{a}",),
                (f"sae_layer:{a}", f"sae_size:{a}", "sae_rows", "sae_batch", "seed"),
                sae_outputs(a),
            ),
            Stage(
                f"interpret_{a}",
                f"label the {a} SAE's latents",
                interpret_stage(a),
                (f"sae_train_{a}",),
                ("interpret_cards",),
                (str(interpret_dir(Path(), a)),),
            ),
        ]
    stages.append(
        Stage(
            "diffing",
            "population and architecture diffing",
            run_diffing,
            tuple(f"interpret_{a}" for a in archs),
            ("diff_bootstrap", "diff_arch_cases", "diff_permutations", "seed"),
            ("diffing",),
        )
    )
    steer = config.steering_architecture
    stages.append(
        Stage(
            "steering",
            f"steering recovery study ({steer})",
            run_steering,
            (f"sae_train_{steer}", EVALUATE),
            ("steering_architecture", "study"),
            (STEERING_DIR,),
        )
    )
    stages.append(
        Stage(
            "triage",
            f"held-out cases ranked by SAE failure risk ({steer})",
            run_triage,
            (f"sae_train_{steer}", f"interpret_{steer}"),  # the worklist's top latents carry its labels
            ("steering_architecture", "sae_adult_cases", "diff_bootstrap", "seed", "spacing", "severity"),
            (TRIAGE_DIR, HEALTHY_CALIBRATION_DIR, _section("triage")),
        )
    )
    stages.append(
        Stage(
            "latent_maps",
            "latent maps of failure cases and workspace.json",
            run_latent_maps,
            (EVALUATE, "diffing", "triage"),
            ("steering_architecture", "map_cases", "map_latents", "failure_dice", "study"),
            (LATENTS_DIR, PREDICTIONS_DIR, "workspace.json", _section("latent_maps")),
        )
    )
    folders = report_sections(config)
    stages.append(
        Stage(
            "report",
            "the HTML report",
            report_stage(list(stages), folders),
            tuple(s.name for s in stages),
            (),
            (REPORT_DIR, _section("report")),
        )
    )
    return stages


def report_sections(config: DemoSettings, work: Path = Path()) -> list[Path]:
    """Section folders in report order (relative to the work folder unless `work` is given)."""
    archs = config.architectures
    folders = [section_dir(work, "cohorts"), *[section_dir(work, f"train_{a}") for a in archs], work / EVALUATION_DIR]
    for a in archs:
        folders += [section_dir(work, f"sae_extract_{a}"), section_dir(work, f"sae_train_{a}"), interpret_dir(work, a)]
    return folders + [
        *diffing_folders(work, archs),
        work / STEERING_DIR,
        section_dir(work, "triage"),
        section_dir(work, "latent_maps"),
    ]


def run_demo(config: DemoSettings, work: str | os.PathLike, until: str | None = None) -> dict[str, StageResult]:
    """Run (or continue) the job in `work`, up to and including stage `until`; returns each stage's result."""
    import torch

    work = Path(work).resolve()
    stages = build_stages(config)
    if until is not None:
        names = [s.name for s in stages]
        stages = stages[: names.index(until) + 1]
    torch.set_grad_enabled(True)  # the steering study turns gradients off process-wide; training needs them
    results = run_stages(stages, config, work)
    return {r.name: r for r in results}
