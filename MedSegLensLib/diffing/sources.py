"""Where diffing inputs come from: one-line descriptions for figure footers, and store/SAE compatibility checks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ..errors import CompatibilityError
from ..sae import ActivationStore
from ..sae.model import SparseAutoencoder


def describe_sae(path: str | Path, sae: SparseAutoencoder) -> str:
    """The SAE folder, its size, layer and the first digits of its weights' hash."""
    sidecar = json.loads((Path(path) / "sae.json").read_text(encoding="utf-8"))
    return (
        f"SAE {path} ({sae.n_latents} latents, k {sae.config.k}, {sae.config.kind}, layer {sae.info.layer}, "
        f"weights {sidecar.get('weights_sha256', '')[:12]})"
    )


def describe_store(store: ActivationStore) -> str:
    """The store folder, its rows and cases per population, and the model and layer they were captured from."""
    counts = Counter(c["population"] for c in store.cases)
    info = store.info
    return (
        f"store {store.path} ({store.n_rows} rows of {len(store.cases)} cases: "
        + ", ".join(f"{p} {n}" for p, n in sorted(counts.items()))
        + f"; model {str(info.get('model_fingerprint', '?'))[:12]}, layer {info.get('layer', '?')})"
    )


def check_store_fits_sae(store: ActivationStore, sae: SparseAutoencoder, sae_dir: str | Path) -> None:
    """Refuse a store captured from another model or layer than the SAE was trained on."""
    info = store.info
    if "model_fingerprint" in info and info["model_fingerprint"] != sae.info.model_fingerprint:
        raise CompatibilityError(
            f"{store.path}: activations come from model {str(info['model_fingerprint'])[:12]} but SAE {sae_dir} "
            f"belongs to {sae.info.model_fingerprint[:12]}; use the store captured from the SAE's model"
        )
    if "layer" in info and info["layer"] != sae.info.layer:
        raise CompatibilityError(
            f"{store.path}: activations of layer {info['layer']!r}, SAE {sae_dir} encodes "
            f"{sae.info.layer!r}; use the store of the SAE's layer"
        )


def check_same_layer(sae_a: SparseAutoencoder, dir_a: str | Path, sae_b: SparseAutoencoder, dir_b: str | Path) -> None:
    """Decoder cosines only mean something between SAEs of one model's one layer."""
    if sae_a.info.layer != sae_b.info.layer or sae_a.info.model_fingerprint != sae_b.info.model_fingerprint:
        raise CompatibilityError(
            f"{dir_a} encodes layer {sae_a.info.layer!r} of model {sae_a.info.model_fingerprint[:12]}, {dir_b} layer "
            f"{sae_b.info.layer!r} of model {sae_b.info.model_fingerprint[:12]}; decoder cosine needs one model and "
            "layer: use `medseglens diff archs` to compare different networks"
        )
