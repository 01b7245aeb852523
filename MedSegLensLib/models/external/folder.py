"""The model folder `medseglens import-model` writes, and loading it back.

    MODEL_DIR/model.json          format "medseglens.imported-model": the MedSegLens config, the source
                                  (format, path, sha256 of every file read), its description as data
                                  (nnU-Net plans + dataset.json, or the bundle's network, transforms and
                                  inferer), the input orientation, the output meaning, the weights' sha256
    MODEL_DIR/weights.safetensors the network's tensors, converted from the source's checkpoint

The folder is self-contained: the source may move or disappear. Loading never
reads a pickle; the weights' hash is checked before they are parsed.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from ...errors import CompatibilityError, IntegrityError, ParameterError
from ...fileio import atomic_directory, write_json_atomic
from ..config import ModelConfig
from ..storage import MODEL_JSON, WEIGHTS_FILE, load_state_strict, read_manifest, read_weights, write_weights
from .semantics import OutputMeaning

IMPORTED_FORMAT = "medseglens.imported-model"
FORMAT_VERSION = 1
# source format -> module with build_network(description) and MODEL_CLASS
FORMAT_MODULES = {"nnunetv2": ".nnunet_model", "monai-bundle": ".bundle_model"}


def is_imported_model(model_dir: str | os.PathLike) -> bool:
    path = Path(model_dir) / MODEL_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == IMPORTED_FORMAT
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False


def write_imported_model(
    out: str | os.PathLike,
    *,
    config: ModelConfig,
    source: dict[str, Any],
    description: dict[str, Any],
    input_orientation: str,
    outputs: OutputMeaning,
    tensors: dict[str, torch.Tensor],
    overwrite: bool = False,
) -> str:
    """Publish the folder atomically; return the weights' sha256 (the model's fingerprint)."""
    with atomic_directory(out, overwrite=overwrite) as tmp:
        tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
        digest = write_weights(
            tensors, tmp / WEIGHTS_FILE, {"format": IMPORTED_FORMAT, "architecture": config.architecture}
        )
        write_json_atomic(
            tmp / MODEL_JSON,
            {
                "format": IMPORTED_FORMAT,
                "format_version": FORMAT_VERSION,
                "config": config.to_json(),
                "source": source,
                "description": description,
                "input_orientation": input_orientation,
                "outputs": outputs.to_json(),
                "weights": {"file": WEIGHTS_FILE, "sha256": digest},
            },
        )
    return digest


def _format_module(name: str, path: Path):
    if name not in FORMAT_MODULES:
        raise CompatibilityError(
            f"{path}: imported format '{name}' is unknown to this MedSegLens (known: {', '.join(FORMAT_MODULES)})"
        )
    return importlib.import_module(FORMAT_MODULES[name], __package__)


def load_imported_model(model_dir: str | os.PathLike, device=None):
    """Rebuild an imported model: network from its description, hash-checked weights, the format's model class."""
    model_dir = Path(model_dir)
    path = model_dir / MODEL_JSON
    manifest = read_manifest(model_dir, expected_format=IMPORTED_FORMAT, expected_version=FORMAT_VERSION)
    try:
        config = ModelConfig.from_json(manifest["config"], source=str(path))
        module = _format_module(manifest["source"]["format"], path)
        network = module.build_network(manifest["description"], config, str(path))
        OutputMeaning.from_json(manifest["outputs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"{path}: incomplete imported-model description ({exc}); import the model again") from None
    except ParameterError as exc:
        raise IntegrityError(f"{path}: {exc}") from None
    weights_path = model_dir / manifest["weights"]["file"]
    digest = manifest["weights"]["sha256"]
    tensors, _ = read_weights(weights_path, expected_sha256=digest)
    load_state_strict(network, tensors, weights_path, f"the {config.architecture} network in {MODEL_JSON}")
    return module.MODEL_CLASS(network.eval(), config, digest, manifest, device=device, model_dir=model_dir)
