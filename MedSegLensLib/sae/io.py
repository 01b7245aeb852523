"""Saving, loading and compatibility checks of trained SAEs.

An SAE folder holds `sae.safetensors` (W_enc, b_enc, W_dec, b_dec, threshold) and
`sae.json`: its shape (d_in, latents, k, kind), the backbone fingerprint, architecture
and layer it was trained on, the inference threshold, the input scaling that was folded into
the weights, the training summary, and the sha256 of the weights file, verified on
load. Weights are never unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CompatibilityError, InputError, IntegrityError, MedSegLensError
from ..fileio import atomic_directory, sha256_file
from ..models.inference import SegmentationModel
from .model import SAEConfig, SparseAutoencoder

FORMAT = "medseglens-sae"
VERSION = 1
WEIGHTS = "sae.safetensors"
SIDECAR = "sae.json"
TENSORS = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")


@dataclass
class SAEInfo:
    """Where an SAE belongs: the backbone (fingerprint) and layer whose activations it encodes."""

    model_fingerprint: str
    layer: str
    scaling: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    architecture: str = ""  # of the backbone, to name it in messages; empty in SAEs saved before it was recorded

    def model_name(self) -> str:
        """The backbone as a person tells models apart: architecture and the start of its fingerprint."""
        return f"{self.architecture or 'model'} {self.model_fingerprint[:12]}"


def save_sae(
    sae: SparseAutoencoder,
    folder: str | Path,
    info: SAEInfo,
    overwrite: bool = False,
) -> Path:
    """Write the SAE folder atomically; `sae` must already have its input scale folded in."""
    if float(sae.input_scale) != 1.0:
        raise ValueError("fold the input scale into the SAE before saving (Trainer.export does)")
    folder = Path(folder)
    tensors = {name: getattr(sae, name).detach().contiguous().clone() for name in TENSORS}
    with atomic_directory(folder, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp / WEIGHTS))
        sidecar = {
            "format": FORMAT,
            "version": VERSION,
            **sae.config.to_dict(),
            "model_fingerprint": info.model_fingerprint,
            "model_architecture": info.architecture,
            "layer": info.layer,
            "threshold": float(sae.threshold),
            "scaling": info.scaling,
            "training": info.training,
            "weights_sha256": sha256_file(tmp / WEIGHTS),
        }
        (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")
    sae.info = info
    return folder


def load_sae(folder: str | Path) -> SparseAutoencoder:
    """Read an SAE folder, verifying the weights' hash and shapes; `.info` says where it belongs."""
    folder = Path(folder)
    sidecar_path, weights_path = folder / SIDECAR, folder / WEIGHTS
    if not sidecar_path.exists() or not weights_path.exists():
        raise InputError(
            f"{folder}: not an SAE folder (needs {SIDECAR} and {WEIGHTS}); pass the folder `sae train` wrote"
        )
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{sidecar_path}: unreadable ({exc}); retrain or restore the SAE") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT or sidecar.get("version") != VERSION:
        raise InputError(f"{sidecar_path}: not a version-{VERSION} MedSegLens SAE sidecar")
    if sha256_file(weights_path) != sidecar.get("weights_sha256"):
        raise IntegrityError(
            f"{weights_path}: sha256 does not match {SIDECAR}; the weights were modified, restore or retrain"
        )
    try:
        config = SAEConfig(int(sidecar["d_in"]), int(sidecar["n_latents"]), int(sidecar["k"]), str(sidecar["kind"]))
        info = SAEInfo(
            str(sidecar["model_fingerprint"]),
            str(sidecar["layer"]),
            dict(sidecar.get("scaling") or {}),
            dict(sidecar.get("training") or {}),
            str(sidecar.get("model_architecture") or ""),
        )
        tensors = load_file(str(weights_path))
    except (KeyError, TypeError, ValueError, MedSegLensError, SafetensorError) as exc:
        raise IntegrityError(
            f"{sidecar_path}: entry missing or invalid ({' '.join(str(exc).split())[:120]}); restore or retrain the SAE"
        ) from None
    with torch.device("meta"):  # shapes only: a tampered sidecar must not make us allocate its sizes
        expected = {name: getattr(SparseAutoencoder(config), name).shape for name in TENSORS}
    for name, shape in expected.items():
        if name not in tensors or tensors[name].shape != shape:
            got = tuple(tensors[name].shape) if name in tensors else "missing"
            raise IntegrityError(f"{weights_path}: tensor {name} is {got}, {SIDECAR} implies {tuple(shape)}")
    sae = SparseAutoencoder(config)
    with torch.no_grad():
        for name in TENSORS:
            getattr(sae, name).copy_(tensors[name])
    sae.requires_grad_(False)
    sae.info = info
    return sae


def check_compatible(sae: SparseAutoencoder, model_fingerprint: str, layer: str, d_in: int) -> None:
    """Refuse to apply an SAE to a model, layer or channel count it was not trained on."""
    info: SAEInfo | None = getattr(sae, "info", None)
    if info is None:
        raise CompatibilityError("this SAE carries no model/layer record; load it with load_sae from its folder")
    if info.model_fingerprint != model_fingerprint:
        raise CompatibilityError(
            f"SAE was trained on model {info.model_fingerprint[:12]} but this model is {model_fingerprint[:12]}; "
            "train an SAE on this model or load the matching model"
        )
    if info.layer != layer:
        raise CompatibilityError(
            f"SAE was trained on layer {info.layer!r}, not {layer!r}; pass --layer {info.layer} or train an SAE for "
            f"{layer}"
        )
    if sae.d_in != d_in:
        raise CompatibilityError(
            f"SAE expects {sae.d_in} channels but layer {layer!r} gives {d_in}; the model or layer changed, retrain "
            "the SAE"
        )


def check_sae_for_model(
    sae: SparseAutoencoder, sae_dir: str | Path, model: SegmentationModel, layer: str | None = None
) -> str:
    """The layer the SAE encodes on `model`; refuses an SAE of another model (checked first) or another layer.

    Commands that take a model and an SAE call this before any other check or work, so a mixed-up pair is
    reported as such (naming both models) instead of as a symptom (an unknown layer, a latent that never fired).
    """
    info: SAEInfo = sae.info
    if info.model_fingerprint != model.fingerprint:
        model_dir = model.model_dir or "the model"
        raise CompatibilityError(
            f"{sae_dir}: this SAE was trained on another model ({info.model_name()}), not on {model_dir} "
            f"({model.config.architecture} {model.fingerprint[:12]}); pass the model it was trained on, "
            "or an SAE trained on this one"
        )
    if layer is not None and layer != info.layer:
        raise CompatibilityError(
            f"{sae_dir}: this SAE encodes layer {info.layer!r}, not {layer!r}; "
            f"leave out --layer or train an SAE for {layer}"
        )
    return info.layer
