"""Importing a MONAI bundle folder (configs/inference.json|yaml, configs/metadata.json, models/model.pt|ts).

The network (`network_def`), the preprocessing transforms, the inferer and the
output activation are read from the config as data (`bundle_config`); input
channel names and output channel names come from metadata.json's
`network_data_format`; the weights from models/model.safetensors, model.pt
(weights-only) or model.ts (its tensors only; TorchScript code is never run,
and hooks need the eager network anyway).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ...errors import CompatibilityError, InputError
from ...fileio import sha256_file
from ..config import ModelConfig
from ..storage import load_state_strict
from .bundle_config import BundleConfig, component, find_inference_config
from .bundle_model import APPLIED_TRANSFORMS, INFERERS, NETWORKS, SKIPPED_TRANSFORMS, build_network
from .checkpoints import read_weight_file
from .data_files import read_data_file
from .folder import write_imported_model
from .orientation import check_axis_codes
from .semantics import channel_modalities, class_outputs, parse_channels, region_outputs

WEIGHT_FILES = ("model.safetensors", "model.pt", "model.ts")
DEFAULT_PATCH = (96, 96, 96)


def _transform_list(config: BundleConfig, entry: str) -> list[Any]:
    if not config.has(entry):
        return []
    spec = config.resolved(entry)
    if isinstance(spec, dict) and "transforms" in spec:
        spec = spec["transforms"]
    if not isinstance(spec, list):
        raise CompatibilityError(f"{config.source}: '{entry}' is not a list of transforms (or a Compose of one)")
    return spec


def read_preprocessing(config: BundleConfig) -> tuple[list[dict], str, str | None]:
    """(applied transforms as {target, args}, image key, Orientation axcodes or None)."""
    applied, image_key, axcodes = [], None, None
    allowed = {**APPLIED_TRANSFORMS, **SKIPPED_TRANSFORMS}
    for index, spec in enumerate(_transform_list(config, "preprocessing")):
        found = component(spec, allowed, f"preprocessing::{index}", config.source)
        if found is None:
            continue
        name, args = found
        keys = args.get("keys")
        image_key = image_key or (keys[0] if isinstance(keys, list) else keys)
        if name in SKIPPED_TRANSFORMS:
            continue
        if name.startswith("Orientation"):
            axcodes = str(args.get("axcodes", "RAS"))
        applied.append(
            {"target": name, "args": {k: v for k, v in args.items() if k not in ("keys", "allow_missing_keys")}}
        )
    return applied, image_key or "image", axcodes


def read_postprocessing(config: BundleConfig) -> dict[str, Any]:
    """The output activation (sigmoid or softmax) and, for sigmoid outputs, the threshold."""
    post: dict[str, Any] = {"activation": "softmax", "threshold": 0.5, "ignored": []}
    for spec in _transform_list(config, "postprocessing"):
        target = str(spec.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(spec, dict) else ""
        if target in ("Activationsd", "Activations"):
            post["activation"] = "sigmoid" if spec.get("sigmoid") in (True, "true") else "softmax"
        elif target in ("AsDiscreted", "AsDiscrete") and spec.get("threshold") is not None:
            post["threshold"] = float(spec["threshold"])
        elif target:
            post["ignored"].append(target)
    return post


def read_inferer(config: BundleConfig) -> tuple[dict[str, Any], tuple[int, int, int]]:
    spec = config.resolved("inferer") if config.has("inferer") else {"_target_": "SimpleInferer"}
    name, args = component(spec, INFERERS, "inferer", config.source)
    roi = args.get("roi_size")
    patch = tuple(int(r) for r in roi) if isinstance(roi, list) and len(roi) == 3 else DEFAULT_PATCH
    return {"target": name, "args": args}, patch


def data_format(metadata: dict, direction: str, key: str | None) -> dict:
    formats = metadata.get("network_data_format", {}).get(direction, {}) if isinstance(metadata, dict) else {}
    return formats.get(key) or (next(iter(formats.values())) if formats else {})


def channel_names(fmt: dict, count: int) -> list[str] | None:
    names = fmt.get("channel_def") if isinstance(fmt, dict) else None
    if not isinstance(names, dict) or len(names) != count:
        return None
    return [str(names[k]) for k in sorted(names, key=int)]


def find_weights(bundle: Path) -> Path:
    for name in WEIGHT_FILES:
        if (bundle / "models" / name).is_file():
            return bundle / "models" / name
    raise InputError(f"{bundle}: no models/{' or models/'.join(WEIGHT_FILES)}")


def import_bundle(
    src: str | os.PathLike,
    out: str | os.PathLike,
    channels: str | None = None,
    input_orientation: str | None = None,
    output_names: list[str] | None = None,
    overwrite: bool = False,
) -> str:
    """Convert a MONAI bundle folder into a MedSegLens model folder; return its fingerprint."""
    bundle = Path(src)
    if not bundle.is_dir():
        raise InputError(f"{bundle}: MONAI bundle folder not found")
    config_path = find_inference_config(bundle)
    config = BundleConfig(read_data_file(config_path), str(config_path))
    metadata_path = bundle / "configs" / "metadata.json"
    metadata = read_data_file(metadata_path) if metadata_path.is_file() else {}
    net_name, net_args = component(config.resolved("network_def"), NETWORKS, "network_def", config.source)
    preprocessing, image_key, axcodes = read_preprocessing(config)
    inferer, patch = read_inferer(config)
    post = read_postprocessing(config)
    network = build_network({"network": {"target": net_name, "args": net_args}}, None, config.source)
    weights = find_weights(bundle)
    load_state_strict(network, read_weight_file(weights), weights, f"the bundle's {net_name}")
    in_channels, out_channels = _channel_counts(network, net_args, patch)
    names_in = channel_names(data_format(metadata, "inputs", image_key), in_channels)
    if channels:
        modalities = parse_channels(channels, in_channels, str(bundle))
    elif names_in is None:
        raise CompatibilityError(
            f"{metadata_path}: no channel_def for the {in_channels} input channel(s); "
            "say which modality each is with --channels"
        )
    else:
        modalities = channel_modalities(names_in, str(metadata_path))
    names_out = channel_names(data_format(metadata, "outputs", None), out_channels) or [
        f"output {i}" for i in range(out_channels)
    ]
    if post["activation"] == "sigmoid":
        meaning = region_outputs(names_out, None, output_names)
    else:
        meaning = class_outputs(list(enumerate(names_out)), output_names)
    spacing = next((s["args"].get("pixdim") for s in preprocessing if s["target"].startswith("Spacing")), None)
    model_config = ModelConfig(
        architecture=f"monai-bundle:{net_name}",
        hyper_parameters=net_args,
        spacing=[float(v) for v in spacing] if isinstance(spacing, list) and len(spacing) == 3 else None,
        patch_size=patch,
        normalisation="source",
        modalities=modalities,
        labels=meaning.labels,
        sliding_window={k: inferer["args"][k] for k in ("overlap", "mode", "sw_batch_size") if k in inferer["args"]},
    )
    description = {
        "network": {"target": net_name, "args": net_args},
        "preprocessing": preprocessing,
        "image_key": image_key,
        "inferer": inferer,
        "postprocessing": post,
    }
    files = [config_path, weights] + ([metadata_path] if metadata_path.is_file() else [])
    source = {
        "format": "monai-bundle",
        "path": str(bundle.resolve()),
        "name": metadata.get("name", bundle.name),
        "version": metadata.get("version"),
        "files": {str(f.relative_to(bundle)): sha256_file(f) for f in files},
    }
    orientation = check_axis_codes(input_orientation or axcodes or "LPS")
    return write_imported_model(
        out,
        config=model_config,
        source=source,
        description=description,
        input_orientation=orientation,
        outputs=meaning,
        tensors=network.state_dict(),
        overwrite=overwrite,
    )


def _channel_counts(network: torch.nn.Module, args: dict, patch: tuple[int, int, int]) -> tuple[int, int]:
    """In/out channels from the network's arguments (every MONAI network has them), else one forward pass."""
    if isinstance(args.get("in_channels"), int) and isinstance(args.get("out_channels"), int):
        return args["in_channels"], args["out_channels"]
    first = next((m for m in network.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)), None)
    if first is None:
        raise CompatibilityError(
            "the bundle's network has no convolution; MedSegLens expects a 3D segmentation network"
        )
    with torch.no_grad():
        out = network.eval()(torch.zeros(1, int(first.in_channels), *patch))
    return int(first.in_channels), int(out.shape[1])
