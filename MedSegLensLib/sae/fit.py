"""Train and save the SAE of one model layer from an activation store, resumably.

While training, checkpoints live in `<SAE_DIR>.partial/`; the finished SAE is
published atomically as `SAE_DIR` (weights + sidecar with the model fingerprint,
layer, scaling and a summary of the training data) and the partial folder is
removed. An interrupted run continues with `resume=True` and yields the same
weights as an uninterrupted one (the trainer's guarantee).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from ..errors import OutputError
from ..models.inference import SegmentationModel
from .extract import check_store_for
from .io import SAEInfo, save_sae
from .model import SparseAutoencoder
from .store import ActivationStore
from .training import CHECKPOINT, Progress, SAETrainingSettings, train_sae


def partial_dir(out: str | os.PathLike) -> Path:
    """Where an unfinished run of `out` keeps its checkpoints."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def data_summary(store: ActivationStore) -> dict:
    """The training data in the SAE's sidecar: store, rows, cases per population, sampling settings."""
    populations = Counter(case["population"] for case in store.cases)
    return {
        "store": str(store.path),
        "rows": store.n_rows,
        "cases": len(store.cases),
        "cases_per_population": dict(sorted(populations.items())),
        "quotas": store.info.get("quotas"),
        "sampling_seed": store.info.get("seed"),
    }


def fit_layer_sae(
    model: SegmentationModel,
    layer: str,
    store: ActivationStore,
    out: str | os.PathLike,
    config: SAETrainingSettings,
    resume: bool = False,
    overwrite: bool = False,
    progress: Callable[[Progress], None] | None = None,
    show_progress: bool = True,
) -> tuple[SparseAutoencoder, dict]:
    """Train on `store` (captured from this model and layer) and save the SAE to `out`."""
    check_store_for(store, model, layer)
    work = prepare_run(out, resume, overwrite)
    sae, summary = train_sae(store, config, checkpoint_dir=work, progress=progress, show_progress=show_progress)
    publish_sae(model, layer, store, out, sae, summary, overwrite)
    return sae, summary


def prepare_run(out: str | os.PathLike, resume: bool, overwrite: bool) -> Path:
    """Refuse to replace `out` or an unfinished run without the flag; return the run's checkpoint folder."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputError(f"{out}: already exists; pass --overwrite or choose another folder")
    work = partial_dir(out)
    if (work / CHECKPOINT).exists() and not resume:
        if not overwrite:
            raise OutputError(
                f"{work}: an unfinished training run is there; pass --resume to continue it "
                "or --overwrite to start over"
            )
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    return work


def publish_sae(
    model: SegmentationModel,
    layer: str,
    store: ActivationStore,
    out: str | os.PathLike,
    sae: SparseAutoencoder,
    summary: dict,
    overwrite: bool,
) -> None:
    """Save the trained SAE with its sidecar (adds the training data to `summary`) and drop the run's checkpoints."""
    summary["data"] = data_summary(store)
    info = SAEInfo(
        model.fingerprint, layer, {"input_scale_folded": summary["input_scale"]}, summary, model.config.architecture
    )
    save_sae(sae, out, info, overwrite=overwrite)
    shutil.rmtree(partial_dir(out), ignore_errors=True)
