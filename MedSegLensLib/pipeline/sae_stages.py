"""Stages `sae_extract_<arch>` and `sae_train_<arch>`: pooled activations at the default layer, then the SAE.

Activations come from adult training cases and the pediatric and SSA
calibration cohorts, so population contrasts (diffing, steering) can be
measured in the SAE's own store; the held-out test cohorts stay unseen.
"""

from __future__ import annotations

from pathlib import Path

from ..data import discover_cohorts
from ..models import load_model
from ..progress import case_bar
from ..report import Section, Table, write_section
from ..sae import DEFAULT_QUOTAS, ActivationStore, SAETrainingSettings, load_sae
from ..sae.extract import extract_activations
from ..sae.fit import fit_layer_sae, partial_dir
from .backbone_stages import model_dir
from .cohorts import cohort_folders, section_dir
from .stages import StageContext

STORES_DIR = "stores"
SAES_DIR = "saes"


def store_dir(work: Path, architecture: str) -> Path:
    return work / STORES_DIR / architecture


def sae_dir(work: Path, architecture: str) -> Path:
    return work / SAES_DIR / architecture


def sae_outputs(architecture: str) -> tuple[str, ...]:
    """The SAE folder and its unfinished-run folder (relative to the work folder)."""
    folder = Path(SAES_DIR) / architecture
    return str(folder), str(partial_dir(folder)), f"sections/sae_train_{architecture}"


def extract_stage(architecture: str):
    def run(ctx: StageContext) -> dict:
        config = ctx.config
        model = load_model(model_dir(ctx.work, architecture), device="cpu")
        layer = config.sae_plan(architecture)[0]
        adult = discover_cohorts(cohort_folders(ctx.work, config.role("train")))[: config.sae_adult_cases]
        cases = adult + discover_cohorts(cohort_folders(ctx.work, config.role("calibration")))
        quotas = {name: max(1, round(n * config.sae_quota_scale)) for name, n in DEFAULT_QUOTAS.items()}
        with case_bar(f"capture {architecture} {layer}", len(cases)) as bar:
            store = extract_activations(
                model,
                layer,
                cases,
                store_dir(ctx.work, architecture),
                quotas,
                config.seed,
                lambda *_: bar.update(1),
                resume=ctx.resume,
            )
        populations = sorted({c["population"] for c in store.cases})
        summary = {
            "layer": layer,
            "rows": store.n_rows,
            "channels": store.d_in,
            "cases": len(store.cases),
            "populations": populations,
        }
        write_section(
            Section(
                f"sae_extract_{architecture}",
                f"Stage sae_extract_{architecture}: activations of {architecture}",
                [
                    f"Stratified rows (tumour sub-regions, tissues, background) of layer {layer}, captured from "
                    f"{len(adult)} adult training cases and the calibration cohorts ({', '.join(populations)})."
                ],
                [
                    Table(
                        "Activation store",
                        ["architecture", "layer", "channels", "cases", "rows"],
                        [[architecture, layer, store.d_in, len(store.cases), store.n_rows]],
                        f"{STORES_DIR}/{architecture}/ (manifest)",
                    )
                ],
                command=(
                    f"medseglens sae extract --model {model_dir(ctx.work, architecture)} --layer {layer} "
                    f"--data ... --out {store_dir(ctx.work, architecture)}"
                ),
            ),
            section_dir(ctx.work, f"sae_extract_{architecture}"),
        )
        return summary

    return run


def train_sae_stage(architecture: str):
    def run(ctx: StageContext) -> dict:
        config, out = ctx.config, sae_dir(ctx.work, architecture)
        model = load_model(model_dir(ctx.work, architecture), device="cpu")
        layer, latents, k, kind = ctx.config.sae_plan(architecture)
        if not (ctx.resume and complete_sae(out)):
            store = ActivationStore(store_dir(ctx.work, architecture))
            train = SAETrainingSettings(
                n_latents=latents,
                k=k,
                kind=kind,
                total_rows=config.sae_rows,
                batch_size=config.sae_batch,
                init_rows=min(16384, store.n_rows),
                seed=config.seed,
                checkpoint_every=50,
            )
            fit_layer_sae(model, layer, store, out, train, resume=ctx.resume, overwrite=True)
        training = load_sae(out).info.training or {}
        summary = {
            "layer": layer,
            "latents": latents,
            "k": k,
            "kind": kind,
            "fvu": training.get("final_fvu"),
            "l0": training.get("final_l0"),
            "dead_fraction": training.get("dead_fraction"),
            "rows": config.sae_rows,
        }
        row = [
            architecture,
            layer,
            latents,
            k,
            kind,
            config.sae_rows,
            _round(summary["fvu"]),
            _round(summary["l0"]),
            _round(summary["dead_fraction"]),
        ]
        write_section(
            Section(
                f"sae_train_{architecture}",
                f"Stage sae_train_{architecture}: SAE on {architecture}",
                [
                    "Fraction of variance unexplained (FVU), mean active latents (L0) and dead latents at the end of "
                    "training, on the training rows."
                ],
                [
                    Table(
                        "Sparse autoencoder",
                        [
                            "architecture",
                            "layer",
                            "latents",
                            "k",
                            "kind",
                            "training rows",
                            "FVU",
                            "L0",
                            "dead fraction",
                        ],
                        [row],
                        f"{SAES_DIR}/{architecture}/sae.json (training)",
                    )
                ],
                command=f"medseglens sae train --model {model_dir(ctx.work, architecture)} --layer {layer} --store "
                f"{store_dir(ctx.work, architecture)} --latents {latents} --k {k} --rows {config.sae_rows} "
                f"--out {out}",
            ),
            section_dir(ctx.work, f"sae_train_{architecture}"),
        )
        return summary

    return run


def complete_sae(folder: Path) -> bool:
    return (folder / "sae.json").is_file() and (folder / "sae.safetensors").is_file()


def _round(value):
    return None if value is None else round(float(value), 3)
