"""Training checkpoints that can be resumed without unpickling anything.

A checkpoint is a folder inside the model folder: the network's weights and
the optimizer's tensors (Adam moments, step counts) as safetensors, and every
plain value (epoch, history, optimizer hyper-parameters, the fingerprint of the
training settings) as JSON. It is written as a whole folder and renamed into
place, so an interrupted write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CompatibilityError, IntegrityError
from ..fileio import atomic_directory, write_json_atomic
from .storage import load_state_strict, read_weights, state_tensors, write_weights

CHECKPOINT_DIR = "checkpoint"
STATE_JSON = "state.json"
NETWORK_FILE = "network.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"


@dataclass
class TrainingState:
    """What a resumed run needs besides tensors: where it stopped and what it has seen."""

    settings_fingerprint: str
    epochs_done: int = 0
    steps_done: int = 0
    elapsed_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def _split_optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors go to safetensors (key '<param>.<name>'), everything else to JSON."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                plain.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "plain_state": plain}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], described: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    for index, values in described.get("plain_state", {}).items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": described["param_groups"]}


def save_checkpoint(
    model_dir: Path, network: nn.Module, optimizer: torch.optim.Optimizer, state: TrainingState
) -> None:
    """Replace the model folder's checkpoint with the current training state."""
    optimizer_tensors, optimizer_json = _split_optimizer_state(optimizer)
    with atomic_directory(model_dir / CHECKPOINT_DIR, overwrite=True) as folder:
        network_sha = write_weights(state_tensors(network), folder / NETWORK_FILE, {"format": "medseglens.checkpoint"})
        optimizer_sha = write_weights(optimizer_tensors, folder / OPTIMIZER_FILE, {"format": "medseglens.checkpoint"})
        write_json_atomic(
            folder / STATE_JSON,
            {
                **state.__dict__,
                "optimizer": optimizer_json,
                "sha256": {NETWORK_FILE: network_sha, OPTIMIZER_FILE: optimizer_sha},
            },
        )


def has_checkpoint(model_dir: Path) -> bool:
    return (model_dir / CHECKPOINT_DIR / STATE_JSON).is_file()


def load_checkpoint(
    model_dir: Path, network: nn.Module, optimizer: torch.optim.Optimizer, settings_fingerprint: str
) -> TrainingState:
    """Restore network and optimizer from the checkpoint; refuse one made with other settings."""
    folder = model_dir / CHECKPOINT_DIR
    path = folder / STATE_JSON
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        hashes = saved.pop("sha256")
        optimizer_json = saved.pop("optimizer")
        state = TrainingState(**saved)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(
            f"{path}: checkpoint state is damaged ({' '.join(str(exc).split())[:100]}); pass --overwrite to start over"
        ) from None
    if state.settings_fingerprint != settings_fingerprint:
        raise CompatibilityError(
            f"{folder}: the checkpoint was made with other settings (architecture, data, seed, epochs or training "
            "options); resume with the same command, or pass --overwrite to start over"
        )
    network_tensors, _ = read_weights(folder / NETWORK_FILE, hashes.get(NETWORK_FILE))
    load_state_strict(network, network_tensors, folder / NETWORK_FILE, "the network being trained")
    optimizer_tensors, _ = read_weights(folder / OPTIMIZER_FILE, hashes.get(OPTIMIZER_FILE))
    try:
        optimizer.load_state_dict(_join_optimizer_state(optimizer_tensors, optimizer_json))
    except (ValueError, KeyError, TypeError) as exc:
        raise CompatibilityError(
            f"{folder}: optimizer state does not fit the network ({' '.join(str(exc).split())[:100]})"
        ) from None
    return state


def remove_checkpoint(model_dir: Path) -> None:
    shutil.rmtree(model_dir / CHECKPOINT_DIR, ignore_errors=True)
