"""Training a segmentation model: Dice+CE on tumour-balanced patches, validation Dice, resumable.

    result = train_model(default_config("unet"), labelled_cases(["cohorts/adult"]),
                         "models/unet", TrainingSettings(epochs=40, seed=0), progress=print)

The run is deterministic for a seed on a given machine: every epoch reseeds
all random generators from (seed, epoch), and the learning rate is a pure
function of the step. A checkpoint is written after every epoch; `resume=True`
continues from it (same settings required) and gives the same weights as an
uninterrupted run. The finished model is `model.json` + `weights.safetensors`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.utils import set_determinism

from ..data import CaseFiles
from ..errors import OutputError, ParameterError
from ..pause_points import pause_point
from . import memory
from .checkpoint import TrainingState, has_checkpoint, load_checkpoint, remove_checkpoint, save_checkpoint
from .config import ModelConfig
from .evaluation import REGIONS, brats_scores
from .inference import window_logits
from .registry import build_network, check_patch_size, count_parameters, default_device
from .storage import MODEL_JSON, WEIGHTS_FILE, save_model
from .training_data import (
    TrainingCase,
    case_ids_digest,
    epoch_loader,
    epoch_seed,
    patch_transform,
    read_cases,
    split_cases,
    training_items,
    training_spacing,
)

DEFAULT_LEARNING_RATES = {"unet": 2e-3, "segformer": 1e-3}


@dataclass
class TrainingSettings:
    """Optimisation settings; all of them enter the checkpoint fingerprint."""

    epochs: int = 40
    seed: int = 0
    batch_size: int = 2
    patches_per_case: int = 1
    tumour_ratio: float = 2.0
    learning_rate: float | None = None
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    val_fraction: float = 0.2
    val_every: int = 1

    def __post_init__(self) -> None:
        """Refuse bad settings on construction, before any case is read or any folder is made."""
        if self.epochs < 1 or self.batch_size < 1 or self.patches_per_case < 1 or self.val_every < 1:
            raise ParameterError("epochs, batch size, patches per case and validation interval must be at least 1")
        if self.batch_size % self.patches_per_case:
            raise ParameterError(
                f"batch size {self.batch_size} must be a multiple of patches per case {self.patches_per_case}"
            )
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ParameterError(f"learning rate {self.learning_rate} must be positive")


@dataclass
class TrainingProgress:
    """Reported after every step (phase 'train') and validation (phase 'validate')."""

    phase: str
    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    loss: float
    val_dice: float | None
    elapsed_s: float


@dataclass
class TrainingResult:
    model_dir: Path
    fingerprint: str
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0


def learning_rate_at(step: int, total: int, base: float, warmup_fraction: float) -> float:
    """Linear warm-up, then cosine decay to zero."""
    warmup = max(1, int(round(warmup_fraction * total)))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def validation_dice(network: torch.nn.Module, cases: Sequence[TrainingCase], config: ModelConfig, device) -> float:
    """Mean Dice over WT, TC, ET and the validation cases (on the model grid)."""
    network.eval()
    values = []
    lookup = np.asarray(config.label_values, dtype=np.uint8)
    for case in cases:
        tensor = torch.from_numpy(case.item["image"])[None].to(device)
        predicted = lookup[window_logits(network, tensor, config)[0].argmax(0).cpu().numpy()]
        reference = lookup[case.item["label"][0]]
        scores = brats_scores(predicted, reference, with_hd95=False, structures=REGIONS)
        values.extend(scores[f"dice_{region}"] for region in REGIONS)
    return float(np.mean(values)) if values else float("nan")


def _fingerprint(config: ModelConfig, settings: TrainingSettings, train_ids: list[str], val_ids: list[str]) -> str:
    blob = json.dumps(
        {"config": config.to_json(), "settings": dataclasses.asdict(settings), "train": train_ids, "val": val_ids},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _prepare_output(model_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber a finished model or an unfinished run unless asked."""
    if overwrite:
        remove_checkpoint(model_dir)
        for name in (MODEL_JSON, WEIGHTS_FILE):
            (model_dir / name).unlink(missing_ok=True)
        return
    if (model_dir / MODEL_JSON).exists():
        raise OutputError(
            f"{model_dir}: already holds a trained model; pass --overwrite to retrain or choose another folder"
        )
    if has_checkpoint(model_dir) and not resume:
        raise OutputError(
            f"{model_dir}: holds an unfinished training run; pass --resume to continue it or --overwrite to start over"
        )
    if model_dir.exists() and not has_checkpoint(model_dir) and any(model_dir.iterdir()):
        raise OutputError(
            f"{model_dir}: folder is not empty and holds no MedSegLens training run; choose another folder"
        )


def train_model(
    config: ModelConfig,
    cases: Sequence[CaseFiles],
    model_dir: str | os.PathLike,
    settings: TrainingSettings | None = None,
    progress: Callable[[TrainingProgress], None] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | torch.device | None = None,
) -> TrainingResult:
    """Train `config`'s network on labelled `cases` and save it into `model_dir`.

    When `config.spacing` is None the cases' most common spacing is used. The
    `progress` callback may raise (e.g. `CancelledError`) to stop; the last
    finished epoch stays in the checkpoint for `resume=True`.
    """
    settings = settings or TrainingSettings()
    model_dir = Path(model_dir)
    _prepare_output(model_dir, resume, overwrite)
    device = torch.device(device) if device is not None else default_device()
    learning_rate = settings.learning_rate or DEFAULT_LEARNING_RATES.get(config.architecture, 1e-3)

    train_files, val_files = split_cases(cases, settings.val_fraction, settings.seed)
    loaded = read_cases([*train_files, *val_files])
    if config.spacing is None:
        config = dataclasses.replace(config, spacing=training_spacing(loaded))
    train_cases = training_items(loaded[: len(train_files)], config)
    val_cases = training_items(loaded[len(train_files) :], config)
    del loaded

    set_determinism(seed=epoch_seed(settings.seed, 0))
    network = build_network(config)
    check_patch_size(network, config)
    network.to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=settings.weight_decay)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    transform = patch_transform(config, settings.patches_per_case, settings.tumour_ratio)
    cases_per_batch = settings.batch_size // settings.patches_per_case
    steps_per_epoch = math.ceil(len(train_cases) / cases_per_batch)
    total_steps = steps_per_epoch * settings.epochs

    fingerprint = _fingerprint(config, settings, case_ids_digest(train_files), case_ids_digest(val_files))
    state = TrainingState(fingerprint)
    if resume and has_checkpoint(model_dir):
        state = load_checkpoint(model_dir, network, optimizer, fingerprint)
    model_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter() - state.elapsed_s
    for epoch in range(state.epochs_done, settings.epochs):
        set_determinism(seed=epoch_seed(settings.seed, epoch))
        network.train()
        losses = []
        for step, batch in enumerate(epoch_loader(train_cases, transform, cases_per_batch, settings.seed, epoch)):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(state.steps_done, total_steps, learning_rate, settings.warmup_fraction)
            try:
                loss = _train_step(network, optimizer, loss_function, batch, device)
            except memory.OutOfMemoryError:
                device = _continue_on_cpu(network, optimizer, device, model_dir, epoch, step, state)
                loss = _train_step(network, optimizer, loss_function, batch, device)
            state.steps_done += 1
            losses.append(loss)
            if progress:
                progress(
                    TrainingProgress(
                        "train",
                        epoch + 1,
                        settings.epochs,
                        step + 1,
                        steps_per_epoch,
                        losses[-1],
                        _last_val(state),
                        time.perf_counter() - started,
                    )
                )
        record: dict[str, Any] = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_dice": None}
        if val_cases and ((epoch + 1) % settings.val_every == 0 or epoch + 1 == settings.epochs):
            record["val_dice"] = validation_dice(network, val_cases, config, device)
            if progress:
                progress(
                    TrainingProgress(
                        "validate",
                        epoch + 1,
                        settings.epochs,
                        steps_per_epoch,
                        steps_per_epoch,
                        record["loss"],
                        record["val_dice"],
                        time.perf_counter() - started,
                    )
                )
        state.elapsed_s = time.perf_counter() - started
        record["elapsed_s"] = round(state.elapsed_s, 2)
        state.history.append(record)
        state.epochs_done = epoch + 1
        save_checkpoint(model_dir, network, optimizer, state)
        pause_point(f"train:epoch-{state.epochs_done}")

    provenance = {
        "trained_by": "medseglens train",
        "settings": {**dataclasses.asdict(settings), "learning_rate": learning_rate},
        "train_cases": [c.case_id for c in train_files],
        "val_cases": [c.case_id for c in val_files],
        "populations": sorted({c.population for c in [*train_files, *val_files]}),
        "parameters": count_parameters(network),
        "history": state.history,
        "elapsed_s": round(state.elapsed_s, 2),
        "environment": {
            "device": str(device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
    }
    network.eval()
    digest = save_model(network, config, model_dir, provenance=provenance, overwrite=True)
    remove_checkpoint(model_dir)
    return TrainingResult(model_dir, digest, state.history, state.elapsed_s)


def _train_step(
    network: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_function, batch: dict, device: torch.device
) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = loss_function(network(batch["image"].to(device)), batch["label"].to(device))
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _continue_on_cpu(
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    model_dir: Path,
    epoch: int,
    step: int,
    state: TrainingState,
) -> torch.device:
    """After a GPU out-of-memory error: carry on on the CPU; on the CPU, stop with what can be resumed."""
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cpu":
        saved = (
            f"epoch {state.epochs_done} is saved, continue with --resume" if state.epochs_done else "nothing was saved"
        )
        raise ParameterError(
            f"{model_dir}: out of memory in epoch {epoch + 1}, step {step + 1} ({saved}); "
            "free memory, or start over with a smaller --batch-size or --patch and --overwrite"
        )
    memory.notice(f"continuing the training on the CPU from epoch {epoch + 1}, step {step + 1} (slower)")
    return memory.move_to_cpu(network, optimizer)


def _last_val(state: TrainingState) -> float | None:
    return next((r["val_dice"] for r in reversed(state.history) if r.get("val_dice") is not None), None)
