"""Stage `latent_maps`: latent maps of failure cases and the viewer's `workspace.json`.

The demo folder is the workspace.

For each shifted population, the failure case whose failure-region Dice is
highest (the borderline failure, where steering has the best chance) gets its
segmentation and the maps of the latents that carry most activation inside
its reference tumour, each described by the interpretation stage.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data import discover_cohorts
from ..diffing import label_text, labels_for
from ..metrics.scores import REGIONS
from ..models import failure_cases, load_model
from ..report import Figure, Section, Table, write_section
from ..sae import encode_case, load_sae
from ..steering.study.settings import HEALTHY_POPULATION, REFERENCE_POPULATION
from ..viewer.workspace import ModelEntry, Overlay, SaeEntry, Workspace, WorkspaceCase, write_workspace_index
from .analysis import DIFFING_DIR, labels_file
from .backbone_stages import MODELS_DIR, model_dir, read_scores
from .cohorts import cohort_folders, section_dir
from .sae_stages import SAES_DIR, sae_dir
from .stages import StageContext
from .triage_stage import TRIAGE_DIR, worklist_folder

LATENTS_DIR = "latents"
PREDICTIONS_DIR = "predictions"
CANDIDATE_LATENTS = 128  # most-firing latents of a case whose tumour mass is compared


def failed_ids(rows: list[dict], failure_dice: float) -> set[str]:
    """Case ids that fail by the failure map's rule (`models.evaluation.failure_cases`)."""
    return {f["case_id"] for f in failure_cases(rows, failure_dice)}


def choose_cases(rows: list[dict], ctx: StageContext) -> list[dict]:
    """Per shifted population, the failure with the highest failure-region Dice; up to `map_cases` in all."""
    config, chosen = ctx.config, []
    failed = failed_ids(rows, config.failure_dice)
    shifted = sorted({r["population"] for r in rows} - {REFERENCE_POPULATION, HEALTHY_POPULATION})
    for population in shifted:
        region = f"dice_{config.study.failure_region(population)}"
        failures = [r for r in rows if r["population"] == population and r["case_id"] in failed]
        if failures:
            chosen.append(max(failures, key=lambda r: (r[region] or 0.0, r["case_id"])))
    if not chosen:  # no failure at all: show the worst case, so the viewer still opens on something
        chosen = [min(rows, key=lambda r: (min(r[f"dice_{x}"] or 0.0 for x in REGIONS), r["case_id"]))]
    return chosen[: config.map_cases]


def tumour_latents(codes, tumour: np.ndarray, count: int) -> list[tuple[int, np.ndarray, float]]:
    """(latent, map on the case grid, activation mass inside `tumour`) of the `count` latents with most mass there."""
    firing = codes.firing_counts()
    candidates = [int(j) for j in np.argsort(-firing)[:CANDIDATE_LATENTS] if firing[j] > 0]
    scored = []
    for latent in candidates:
        heat = codes.latent_map(latent)
        scored.append((latent, heat, float(heat[tumour].sum())))
    scored.sort(key=lambda item: (-item[2], item[0]))
    return scored[:count]


def run_latent_maps(ctx: StageContext) -> dict:
    config, work = ctx.config, ctx.work
    architecture = config.steering_architecture
    model = load_model(model_dir(work, architecture), device="cpu")
    sae = load_sae(sae_dir(work, architecture))
    labels = labels_for(sae_dir(work, architecture), labels_file(work, architecture))
    rows = read_scores(work, architecture)
    by_id = {files.case_id: files for files in discover_cohorts(cohort_folders(work, config.role("test")))}
    chosen = choose_cases(rows, ctx)
    overlays: dict[str, list[Overlay]] = {}
    predictions: dict[str, str] = {}
    panels = []
    for row in chosen:
        case = by_id[row["case_id"]].load()
        prediction = model.predict(case).labels
        predictions[case.case_id] = _relative(
            case.write_like_input(
                prediction, work / PREDICTIONS_DIR / architecture / f"{case.case_id}-seg.nii.gz", dtype=np.uint8
            ),
            work,
        )
        tumour = case.label > 0 if case.label is not None and case.label.any() else prediction > 0
        codes = encode_case(model, sae, case)
        overlays[case.case_id] = []
        top = tumour_latents(codes, tumour, config.map_latents)
        for latent, heat, mass in top:
            path = case.write_like_input(
                heat.astype(np.float32),
                work / LATENTS_DIR / architecture / case.case_id / f"latent-{latent:05d}.nii.gz",
            )
            label = labels.get(latent)
            overlays[case.case_id].append(
                Overlay(
                    name=f"latent {latent}",
                    file=_relative(path, work),
                    latent=latent,
                    category=label.category if label else "",
                    description=label.description if label else "",
                    specificity=round(mass / max(float(heat.sum()), 1e-12), 4),
                    sae=sae_name(architecture),
                )
            )
        panels.append((case, prediction, top))
    cases, failed = [], failed_ids(rows, config.failure_dice)
    for row in rows:
        files = by_id[row["case_id"]]
        dice = {r: row.get(f"dice_{r}") for r in REGIONS}
        cases.append(
            WorkspaceCase(
                row["case_id"],
                row["population"],
                _relative(Path(files.modalities["t1n"]).parent, work),
                prediction=predictions.get(row["case_id"]),
                dice=dice,
                failure=row["case_id"] in failed,
                overlays=overlays.get(row["case_id"], []),
            )
        )
    cases.sort(key=lambda c: (c.case_id not in overlays, c.population, c.case_id))  # the failure cases first
    write_workspace_index(
        Workspace(
            work,
            cases,
            default_model=f"{MODELS_DIR}/{architecture}",
            default_sae=f"{SAES_DIR}/{architecture}",
            models=model_entries(ctx),
            triage=TRIAGE_DIR if (worklist_folder(work) / "worklist.json").is_file() else None,
        )
    )
    folder = section_dir(work, "latent_maps")
    folder.mkdir(parents=True, exist_ok=True)
    _plot(panels, folder / "latent_maps.png", labels)
    table = Table(
        "Latent maps written for the viewer",
        ["case", "population", "WT Dice", "TC Dice", "ET Dice", "latents (share of activation inside the tumour)"],
        [
            [
                r["case_id"],
                r["population"],
                r["dice_WT"],
                r["dice_TC"],
                r["dice_ET"],
                ", ".join(f"{o.latent} ({o.specificity:.0%})" for o in overlays[r["case_id"]]),
            ]
            for r in chosen
        ],
        f"{LATENTS_DIR}/{architecture}/<case>/latent-*.nii.gz, workspace.json",
    )
    write_section(
        Section(
            "latent_maps",
            "Stage latent_maps: latent maps of failure cases",
            [
                f"The {architecture} SAE's latents with most activation inside the reference tumour of the borderline "
                "failure case of each shifted population, written on the case grid for the viewer (workspace.json "
                "lists "
                f"{len(cases)} held-out cases with their Dice and failure flag)."
            ],
            [table],
            [
                Figure(
                    "latent_maps.png",
                    "FLAIR with the reference (green) and predicted (red) tumour outline, "
                    "then the strongest latents' maps",
                    f"{LATENTS_DIR}/{architecture}/",
                )
            ],
        ),
        folder,
    )
    return {
        "cases": [r["case_id"] for r in chosen],
        "failure_case": chosen[0]["case_id"],
        "workspace_cases": len(cases),
    }


def sae_name(architecture: str) -> str:
    return f"{architecture}-sae"


def model_entries(ctx: StageContext) -> list[ModelEntry]:
    """Every model with its SAE, the SAE's interpretation and its population diffing (workspace-relative)."""
    return [
        ModelEntry(
            a,
            f"{MODELS_DIR}/{a}",
            (
                SaeEntry(
                    sae_name(a),
                    f"{SAES_DIR}/{a}",
                    interpretation=_relative(labels_file(ctx.work, a), ctx.work),
                    populations=f"{DIFFING_DIR}/populations-{a}/populations.json",
                ),
            ),
        )
        for a in ctx.config.architectures
    ]


def _relative(path: Path, work: Path) -> str:
    return os.path.relpath(Path(path).resolve(), work.resolve()).replace(os.sep, "/")


def _plot(panels, path: Path, labels) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = 3
    fig, axes = plt.subplots(len(panels), shown + 1, figsize=(3 * (shown + 1), 3 * len(panels)), squeeze=False)
    for row, (case, prediction, top) in enumerate(panels):
        tumour = case.label > 0 if case.label is not None else prediction > 0
        z = int(np.argmax(tumour.sum((0, 1)))) if tumour.any() else case.shape[2] // 2
        flair = case.image[3, :, :, z].T
        axes[row, 0].imshow(flair, cmap="gray", origin="lower")
        axes[row, 0].contour(tumour[:, :, z].T, levels=[0.5], colors="lime", linewidths=0.8)
        axes[row, 0].contour((prediction > 0)[:, :, z].T, levels=[0.5], colors="red", linewidths=0.8)
        axes[row, 0].set_title(f"{case.case_id} ({case.population})", fontsize=8)
        for column in range(shown):
            ax = axes[row, column + 1]
            ax.imshow(flair, cmap="gray", origin="lower")
            if column < len(top):
                latent, heat, _ = top[column]
                layer = heat[:, :, z].T
                ax.imshow(np.ma.masked_less_equal(layer, 0), cmap="magma", origin="lower", alpha=0.8)
                text = label_text(labels, latent)
                ax.set_title(f"latent {latent}" + (f"\n{text[:40]}" if text else ""), fontsize=7)
        for ax in axes[row]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
