"""Interpret one SAE of one model on labelled cohorts: the call behind `medseglens interpret` and the demo job.

Loads the model and the SAE, checks that the SAE belongs to the model (one-line
`CompatibilityError` before any work), and hands `pipeline.interpret` an encoder
that runs the model with the SAE's layer hooked (`sae.encode_case`), and tells
the artefact test where the model's sliding windows step (seams).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ..errors import ParameterError
from ..fileio import check_can_write
from .evidence import LayerCodes
from .pipeline import InterpretResult, InterpretSettings, interpret


def window_step(patch_size: tuple[int, int, int], overlap: float) -> tuple[int, int, int]:
    """Image voxels between sliding windows along each axis, as monai.inferers.utils._get_scan_interval
    places them (`int(roi * (1 - overlap))`, at least 1)."""
    return tuple(max(1, int(size * (1 - overlap))) for size in patch_size)


def with_window_step(settings: InterpretSettings | None, model) -> InterpretSettings:
    """`settings` with the model's sliding-window step for the seam test (unless one is set already)."""
    settings = settings or InterpretSettings()
    artefacts = settings.scoring.artefacts
    if artefacts.window_step is not None:
        return settings
    step = window_step(model.config.patch_size, float(model.config.sliding_window.get("overlap", 0.5)))
    scoring = replace(settings.scoring, artefacts=replace(artefacts, window_step=step))
    return replace(settings, scoring=scoring)


def interpret_sae_run(
    model_dir: str | os.PathLike,
    sae_dir: str | os.PathLike,
    data_dirs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    settings: InterpretSettings | None = None,
    precision: str = "fp32",
    device=None,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
) -> InterpretResult:
    """As `interpret_sae`, returning the whole result (score table, records, counts, cards)."""
    from ..data import discover_cohorts
    from ..models import load_model
    from ..sae import check_sae_for_model, encode_case, load_sae

    model = load_model(model_dir, device=device)
    sae = load_sae(sae_dir)
    check_sae_for_model(sae, sae_dir, model)
    if precision not in ("fp32", "bf16"):
        raise ParameterError(f"precision {precision!r}: use fp32 or bf16")
    check_can_write(out_dir, overwrite)
    data_dirs = [str(d) for d in data_dirs]
    cases = discover_cohorts(data_dirs)

    def encode(case):
        return LayerCodes.from_case_codes(encode_case(model, sae, case, precision=precision))

    architecture = model.config.architecture
    info = {
        "model": {
            "path": str(Path(model_dir).resolve()),
            "architecture": architecture,
            "fingerprint": model.fingerprint,
        },
        "sae": {
            "path": str(Path(sae_dir).resolve()),
            "layer": sae.info.layer,
            "n_latents": sae.n_latents,
            "k": sae.config.k,
            "kind": sae.config.kind,
        },
        "cohorts": [str(Path(d).resolve()) for d in data_dirs],
    }
    source = (
        f"{architecture} model {model.fingerprint[:12]} ({model_dir}), SAE {sae_dir} at layer "
        f"{sae.info.layer} ({sae.n_latents} latents), {len(cases)} cases from {', '.join(data_dirs)}"
    )
    command = command or (f"interpret_sae({str(model_dir)!r}, {str(sae_dir)!r}, {data_dirs!r}, {str(out_dir)!r})")
    return interpret(
        cases,
        encode,
        sae.n_latents,
        out_dir,
        info=info,
        source=source,
        command=command,
        title=f"Latents of {architecture} at {sae.info.layer}",
        settings=with_window_step(settings, model),
        overwrite=overwrite,
        progress=progress,
        run_name=f"{architecture} {sae.info.layer}",
    )


def interpret_sae(
    model_dir: str | os.PathLike,
    sae_dir: str | os.PathLike,
    data_dirs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    cards: int = 6,
    settings: InterpretSettings | None = None,
    precision: str = "fp32",
    device=None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Score, categorise and describe every latent of the SAE at `sae_dir` (trained on the model at
    `model_dir`) on the labelled cohort folders `data_dirs`; write latents.json, latents.csv, scores.csv,
    categories.png, cards/, gallery.html and section.json into the new folder `out_dir`; return it.

    `cards` sets the cards per category unless `settings` is given (which then decides everything).
    """
    settings = settings or InterpretSettings(cards_per_category=cards)
    return interpret_sae_run(
        model_dir,
        sae_dir,
        data_dirs,
        out_dir,
        settings=settings,
        precision=precision,
        device=device,
        overwrite=overwrite,
        progress=progress,
    ).folder
