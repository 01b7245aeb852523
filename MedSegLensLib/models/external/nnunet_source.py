"""Importing an nnU-Net v2 trained-model folder (dataset.json, plans.json, fold_*/checkpoint_final.pth).

One fold becomes one MedSegLens model (an SAE needs one network; nnU-Net's
fold ensemble averages several). Its checkpoint is read with
`torch.load(weights_only=True)`; the plans and dataset.json are JSON data
copied into the model folder; the input channels and the labels or regions are
matched to MedSegLens's modalities and BraTS labels from dataset.json's names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import CompatibilityError, InputError, ParameterError
from ...fileio import sha256_file
from ..config import ModelConfig
from ..storage import load_state_strict
from .checkpoints import find_state_dict, load_checkpoint, read_weight_file
from .data_files import read_data_file
from .folder import write_imported_model
from .nnunet_model import architecture_of, build_network, require_nnunet
from .orientation import check_axis_codes
from .semantics import OutputMeaning, channel_modalities, class_outputs, parse_channels, region_outputs

CHECKPOINTS = ("checkpoint_final.safetensors", "checkpoint_final.pth")


def pick_fold(src: Path, fold: str | None) -> Path:
    """fold_<F> (F a number or 'all'); by default fold 0, or the only fold there is."""
    folds = sorted(p.name[len("fold_") :] for p in src.glob("fold_*") if p.is_dir())
    if not folds:
        raise InputError(
            f"{src}: no fold_* folder; point at the folder nnUNetv2_train wrote (…/Trainer__Plans__Config)"
        )
    chosen = str(fold) if fold is not None else ("0" if "0" in folds or len(folds) > 1 else folds[0])
    if chosen not in folds:
        raise ParameterError(f"--fold {chosen}: {src} has fold(s) {', '.join(folds)}")
    return src / f"fold_{chosen}"


def pick_checkpoint(fold_dir: Path, name: str | None) -> Path:
    names = (name,) if name else CHECKPOINTS
    for candidate in names:
        if (fold_dir / candidate).is_file():
            return fold_dir / candidate
    raise InputError(f"{fold_dir}: no {' or '.join(names)}; the fold has not finished training (or give --checkpoint)")


def read_fold_checkpoint(path: Path) -> tuple[dict, dict[str, Any]]:
    """(state dict, what nnU-Net stored beside it: trainer, configuration, mirroring axes)."""
    if path.suffix == ".safetensors":
        return read_weight_file(path), {}
    checkpoint = load_checkpoint(path)
    tensors = find_state_dict(checkpoint, str(path), "network_weights" if "network_weights" in checkpoint else None)
    init_args = checkpoint.get("init_args") if isinstance(checkpoint.get("init_args"), dict) else {}
    return tensors, {
        "trainer": checkpoint.get("trainer_name"),
        "configuration": init_args.get("configuration"),
        "mirroring_axes": checkpoint.get("inference_allowed_mirroring_axes"),
    }


def output_meaning(dataset_json: dict, label_manager, output_names: list[str] | None) -> OutputMeaning:
    labels = {k: v for k, v in dataset_json["labels"].items() if k != "ignore"}
    if label_manager.has_regions:
        names = [name for name, value in labels.items() if isinstance(value, (list, tuple))]
        return region_outputs(names, [int(v) for v in label_manager.regions_class_order], output_names)
    ordered = sorted(((int(v), str(k)) for k, v in labels.items()), key=lambda item: item[0])
    return class_outputs(ordered, output_names)


def import_nnunet(
    src: str | os.PathLike,
    out: str | os.PathLike,
    fold: str | None = None,
    channels: str | None = None,
    input_orientation: str | None = None,
    output_names: list[str] | None = None,
    checkpoint: str | None = None,
    configuration: str | None = None,
    mirroring: bool = False,
    overwrite: bool = False,
) -> str:
    """Convert one fold of an nnU-Net v2 model into a MedSegLens model folder; return its fingerprint."""
    src = Path(src)
    if not src.is_dir():
        raise InputError(f"{src}: nnU-Net model folder not found")
    missing = "not found; an nnU-Net v2 model folder holds dataset.json, plans.json and fold_*/"
    dataset_json, plans = read_data_file(src / "dataset.json", missing), read_data_file(src / "plans.json", missing)
    fold_dir = pick_fold(src, fold)
    ckpt = pick_checkpoint(fold_dir, checkpoint)
    tensors, stored = read_fold_checkpoint(ckpt)
    configuration = configuration or stored.get("configuration") or src.name.rsplit("__", 1)[-1]
    require_nnunet()
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    arch = architecture_of(plans, configuration, str(src / "plans.json"))
    try:
        plans_manager = PlansManager(plans)
        config_manager = plans_manager.get_configuration(configuration)
        label_manager = plans_manager.get_label_manager(dataset_json)
    except (KeyError, TypeError, ValueError, AssertionError, AttributeError) as exc:
        raise CompatibilityError(f"{src}: nnU-Net cannot read these plans/dataset.json ({exc})") from None
    patch = [int(p) for p in config_manager.patch_size]
    if len(patch) != 3:
        raise CompatibilityError(f"{src}: configuration '{configuration}' is 2D; MedSegLens imports 3D configurations")
    channel_names = [
        str(n)
        for _, n in sorted(
            dataset_json.get("channel_names", dataset_json.get("modality", {})).items(), key=lambda item: int(item[0])
        )
    ]
    modalities = (
        parse_channels(channels, len(channel_names), str(src))
        if channels
        else channel_modalities(channel_names, str(src / "dataset.json"))
    )
    meaning = output_meaning(dataset_json, label_manager, output_names)
    reader = str(plans.get("image_reader_writer", "SimpleITKIO"))
    orientation = check_axis_codes(input_orientation or ("RAS" if "Reorient" in reader else "LPS"))
    config = ModelConfig(
        architecture="nnunetv2:" + arch["network_class_name"].rsplit(".", 1)[1],
        hyper_parameters=arch["arch_kwargs"],
        spacing=[float(s) for s in config_manager.spacing],
        patch_size=patch,
        normalisation="source",
        modalities=modalities,
        labels=meaning.labels,
        sliding_window={"overlap": 0.5, "mode": "gaussian", "batch_size": 1, "mirroring": bool(mirroring)},
    )
    description = {
        "plans": plans,
        "dataset_json": dataset_json,
        "configuration": configuration,
        "trainer": stored.get("trainer") or src.name.split("__")[0],
        "mirroring_axes": stored.get("mirroring_axes"),
        "num_outputs": int(label_manager.num_segmentation_heads),
        "fold": fold_dir.name[len("fold_") :],
    }
    network = build_network(description, config, str(src))
    load_state_strict(network, tensors, ckpt, f"the network nnU-Net's plans describe ({configuration})")
    files = [src / "dataset.json", src / "plans.json", ckpt]
    source = {
        "format": "nnunetv2",
        "path": str(src.resolve()),
        "fold": description["fold"],
        "configuration": configuration,
        "reader": reader,
        "files": {str(f.relative_to(src)): sha256_file(f) for f in files},
    }
    return write_imported_model(
        out,
        config=config,
        source=source,
        description=description,
        input_orientation=orientation,
        outputs=meaning,
        tensors=network.state_dict(),
        overwrite=overwrite,
    )
