"""A model folder on disk: `model.json` (config, weights hash, provenance) beside `weights.safetensors`.

Weights are stored with safetensors (no code runs while loading, unlike a
pickle) and their sha256 is recorded in `model.json` and checked before the
file is parsed: a modified weights file is an `IntegrityError`, a weights file
that belongs to another network is a `CompatibilityError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import CompatibilityError, InputError, IntegrityError, OutputError
from ..fileio import atomic_path, sha256_file, write_json_atomic
from .config import ModelConfig
from .registry import build_network, check_patch_size

MODEL_JSON = "model.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = "medseglens.model"
FORMAT_VERSION = 1
METADATA_KEY = "medseglens"


def state_tensors(network: nn.Module) -> dict[str, torch.Tensor]:
    """The network's state as contiguous CPU tensors that own their memory (what safetensors needs)."""
    return {name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in network.state_dict().items()}


def write_weights(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> str:
    """Write a safetensors file atomically; return its sha256.

    The metadata is stored under one key as sorted JSON: safetensors writes
    several metadata keys in a random order, which would make the same
    weights hash differently from run to run.
    """
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
        digest = sha256_file(tmp)
    return digest


def read_weights(path: Path, expected_sha256: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file (never a pickle) after checking its sha256 when one is given."""
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise IntegrityError(
                f"{path}: sha256 {actual[:12]}... differs from {expected_sha256[:12]}... recorded beside it; "
                "the weights were modified or corrupted, restore them or retrain the model"
            )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = json.loads((handle.metadata() or {}).get(METADATA_KEY, "{}"))
            metadata = metadata if isinstance(metadata, dict) else {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise IntegrityError(f"{path}: not a readable safetensors file ({' '.join(str(exc).split())[:120]})") from None
    return tensors, metadata


def load_state_strict(network: nn.Module, tensors: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Copy `tensors` into `network`, refusing any missing, extra or differently shaped tensor."""
    expected = network.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if tuple(expected[k].shape) != tuple(tensors[k].shape))
    if missing or extra or wrong:
        detail = "; ".join(
            f"{label} {names[0]}{f' (+{len(names) - 1} more)' if len(names) > 1 else ''}"
            for label, names in (("missing", missing), ("unexpected", extra), ("wrong shape for", wrong))
            if names
        )
        raise CompatibilityError(
            f"{path}: the tensors do not fit {what} ({detail}); the weights belong to another model"
        )
    network.load_state_dict(tensors, strict=True)


def save_model(
    network: nn.Module,
    config: ModelConfig,
    model_dir: str | os.PathLike,
    provenance: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Write `model.json` and `weights.safetensors` into `model_dir`; return the weights' sha256.

    `provenance` (training settings, data, history) is stored as-is in model.json.
    An existing model is only replaced with `overwrite`.
    """
    model_dir = Path(model_dir)
    manifest_path = model_dir / MODEL_JSON
    if manifest_path.exists() and not overwrite:
        raise OutputError(f"{model_dir}: already holds a model; pass --overwrite or choose another folder")
    config_json = config.to_json()
    metadata = {"format": FORMAT, "architecture": config.architecture}
    digest = write_weights(state_tensors(network), model_dir / WEIGHTS_FILE, metadata)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config_json,
        "weights": {"file": WEIGHTS_FILE, "sha256": digest},
        "provenance": provenance or {},
    }
    write_json_atomic(manifest_path, manifest)
    return digest


def read_manifest(
    model_dir: str | os.PathLike, expected_format: str = FORMAT, expected_version: int = FORMAT_VERSION
) -> dict[str, Any]:
    """The parsed and checked `model.json` of a model folder (imported models have their own format name)."""
    model_dir = Path(model_dir)
    path = model_dir / MODEL_JSON
    if not model_dir.is_dir():
        raise InputError(f"{model_dir}: model folder not found")
    if not path.is_file():
        raise InputError(
            f"{model_dir}: no {MODEL_JSON}; not a MedSegLens model folder (train one with `medseglens train`)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(
            f"{path}: not valid JSON ({' '.join(str(exc).split())[:120]}); the model file is damaged"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != expected_format:
        raise CompatibilityError(f"{path}: not a MedSegLens model description (format '{expected_format}' expected)")
    if manifest.get("format_version") != expected_version:
        raise CompatibilityError(
            f"{path}: model format version {manifest.get('format_version')} is not supported (this MedSegLens reads "
            f"{expected_version})"
        )
    weights = manifest.get("weights")
    if (
        not isinstance(weights, dict)
        or not isinstance(weights.get("sha256"), str)
        or not isinstance(weights.get("file"), str)
    ):
        raise IntegrityError(f"{path}: the weights entry (file and sha256) is missing; the model file is damaged")
    if Path(weights["file"]).name != weights["file"]:
        raise IntegrityError(
            f"{path}: the weights file name '{weights['file']}' must be a plain file name in the model folder"
        )
    return manifest


def load_network(model_dir: str | os.PathLike) -> tuple[nn.Module, ModelConfig, str, dict[str, Any]]:
    """Rebuild a saved network: (network on CPU in eval mode, config, weights sha256, provenance)."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    config = ModelConfig.from_json(manifest.get("config"), source=str(model_dir / MODEL_JSON))
    network = build_network(config)
    check_patch_size(network, config)
    weights_path = model_dir / manifest["weights"]["file"]
    digest = manifest["weights"]["sha256"]
    tensors, metadata = read_weights(weights_path, expected_sha256=digest)
    saved_arch = metadata.get("architecture")
    if saved_arch and saved_arch != config.architecture:
        raise CompatibilityError(
            f"{weights_path}: weights of a '{saved_arch}' network, but {MODEL_JSON} describes '{config.architecture}'"
        )
    load_state_strict(network, tensors, weights_path, f"the {config.architecture} network in {MODEL_JSON}")
    network.eval()
    return network, config, digest, manifest.get("provenance") or {}
