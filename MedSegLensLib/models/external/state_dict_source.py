"""Importing a plain state dict (or a TorchScript file's weights) plus a JSON naming a MONAI network.

The JSON is a MedSegLens model config (docs/models.md): `architecture`
"monai:<Network>" (or "unet"/"segformer"), `hyper_parameters`, `patch_size`,
`spacing`, `normalisation`, `modalities`, `labels`. The result is an ordinary
MedSegLens model folder (safetensors + model.json), so nothing downstream
differs from a model trained here. A TorchScript file contributes only its
tensors, read without running its code: hooks need the eager network, and a
loaded ScriptModule refuses forward hooks altogether.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import InputError
from ...fileio import sha256_file
from ..config import ModelConfig
from ..registry import build_network, check_patch_size
from ..storage import load_state_strict, save_model
from .checkpoints import read_weight_file
from .data_files import read_data_file
from .inert_pickle import is_torchscript_archive
from .semantics import parse_channels


def read_network_json(path: Path) -> ModelConfig:
    data = read_data_file(path, "network JSON not found (it names the MONAI network and its arguments)")
    return ModelConfig.from_json(data, source=str(path))


def import_state_dict(
    weights: str | os.PathLike,
    network_json: str | os.PathLike,
    out: str | os.PathLike,
    channels: str | None = None,
    key: str | None = None,
    torchscript: bool = False,
    overwrite: bool = False,
) -> str:
    """Convert weights (.safetensors, weights-only .pt/.pth, or TorchScript) into a MedSegLens model folder."""
    weights, network_json = Path(weights), Path(network_json)
    if not weights.is_file():
        raise InputError(f"{weights}: weights file not found")
    if torchscript != is_torchscript_archive(weights):
        kind = "a TorchScript archive" if not torchscript else "not a TorchScript archive"
        raise InputError(f"{weights}: {kind}; use --format {'torchscript' if not torchscript else 'state-dict'}")
    config = read_network_json(network_json)
    if channels:
        config = ModelConfig.from_json(
            {**config.to_json(), "modalities": list(parse_channels(channels, config.in_channels, str(network_json)))},
            source=str(network_json),
        )
    network = build_network(config)
    check_patch_size(network, config)
    load_state_strict(
        network, read_weight_file(weights, key), weights, f"the {config.architecture} network in {network_json}"
    )
    provenance = {
        "imported_from": {
            "format": "torchscript" if torchscript else "state-dict",
            "weights": str(weights.resolve()),
            "weights_sha256": sha256_file(weights),
            "network_json": str(network_json.resolve()),
            "key": key,
        }
    }
    return save_model(network, config, out, provenance=provenance, overwrite=overwrite)
