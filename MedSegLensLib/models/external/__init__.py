"""Bring your own model: nnU-Net v2 folders, MONAI bundles, state dicts and TorchScript weights as backbones.

    fingerprint = import_model("nnunet/Dataset137…/nnUNetTrainer__nnUNetPlans__3d_fullres", "nnunetv2", "models/nn")
    model = load_model("models/nn")      # a SegmentationModel: layers, hooks, SAEs, steering as for any other

See docs/byom.md. Checkpoints are only read by `torch.load(weights_only=True)`,
safetensors, or the inert reader (`convert_checkpoint`), never unpickled.
"""

from __future__ import annotations

import os

from ...errors import ParameterError
from .convert import ConversionResult, convert_checkpoint
from .folder import is_imported_model, load_imported_model
from .imported_model import ImportedModel

FORMATS = ("monai-bundle", "nnunetv2", "state-dict", "torchscript")


def import_model(
    source: str | os.PathLike,
    fmt: str,
    out: str | os.PathLike,
    *,
    fold: str | None = None,
    channels: str | None = None,
    network_json: str | os.PathLike | None = None,
    input_orientation: str | None = None,
    output_names: list[str] | None = None,
    checkpoint: str | None = None,
    key: str | None = None,
    mirroring: bool = False,
    overwrite: bool = False,
) -> str:
    """Turn a user's model into a MedSegLens model folder at `out`; return its weights' sha256 (fingerprint)."""
    if fmt == "nnunetv2":
        from .nnunet_source import import_nnunet

        return import_nnunet(
            source,
            out,
            fold=fold,
            channels=channels,
            input_orientation=input_orientation,
            output_names=output_names,
            checkpoint=checkpoint,
            mirroring=mirroring,
            overwrite=overwrite,
        )
    if fmt == "monai-bundle":
        from .bundle_source import import_bundle

        return import_bundle(
            source,
            out,
            channels=channels,
            input_orientation=input_orientation,
            output_names=output_names,
            overwrite=overwrite,
        )
    if fmt in ("state-dict", "torchscript"):
        from .state_dict_source import import_state_dict

        if network_json is None:
            raise ParameterError(f"--format {fmt} needs --network NET.json naming the MONAI network and its arguments")
        return import_state_dict(
            source, network_json, out, channels=channels, key=key, torchscript=fmt == "torchscript", overwrite=overwrite
        )
    raise ParameterError(f"--format '{fmt}' is unknown; use one of {', '.join(FORMATS)}")


__all__ = [
    "FORMATS",
    "ConversionResult",
    "ImportedModel",
    "convert_checkpoint",
    "import_model",
    "is_imported_model",
    "load_imported_model",
]
