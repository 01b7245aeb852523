"""Each latent's typical activation: the unit of additive and clamp strengths.

"alpha = 1" means "add latent i as strongly as it typically fires": a_i is the
99th percentile of its code over the rows where it is active, measured on the
SAE's training activations (a row source: the activation store). Saved beside
the SAE as `latent_scales.json`, bound to the SAE's weights hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError, IntegrityError, OutputError, ParameterError
from ..fileio import write_json_atomic
from ..sae import SparseAutoencoder
from ..sae.io import SIDECAR

SCALES_FILE = "latent_scales.json"
DEFAULT_QUANTILE = 0.99
DEFAULT_MAX_ROWS = 262_144


@dataclass
class LatentScales:
    """typical[i]: the quantile of latent i's positive codes (0 when it never fired); frequency[i]: firing rate."""

    typical: torch.Tensor
    frequency: torch.Tensor
    quantile: float
    rows: int
    sae_sha256: str

    def of(self, latents) -> torch.Tensor:
        """Typical activations of `latents`; refuses latents that never fired (their unit is unknown)."""
        values = self.typical[list(latents)]
        dead = [int(latent) for latent, value in zip(latents, values) if float(value) <= 0]
        if dead:
            raise ParameterError(
                f"latent {dead[0]} never fired on the SAE's training rows, so it has no typical "
                "activation to scale by; choose a latent that fires (see its firing frequency)"
            )
        return values

    def to_json(self) -> dict:
        return {
            "format": "medseglens-latent-scales",
            "quantile": self.quantile,
            "rows": self.rows,
            "sae_sha256": self.sae_sha256,
            "typical": [float(v) for v in self.typical],
            "frequency": [float(v) for v in self.frequency],
        }


def sae_sha256(sae_dir: str | Path) -> str:
    """The SAE's weights hash as its sidecar records it (load_sae verified it)."""
    path = Path(sae_dir) / SIDECAR
    try:
        return str(json.loads(path.read_text())["weights_sha256"])
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: cannot read the SAE's weights hash ({exc}); pass an SAE folder") from None


@torch.no_grad()
def compute_latent_scales(
    sae: SparseAutoencoder, batches, sha256: str, quantile: float = DEFAULT_QUANTILE, max_rows: int = DEFAULT_MAX_ROWS
) -> LatentScales:
    """Per-latent quantile of the positive codes over up to `max_rows` rows of `batches` (tensors rows x d_in)."""
    values, latents, seen = [], [], 0
    for batch in batches:
        batch = batch[: max_rows - seen].float()
        codes = sae.encode_sparse(batch)
        values.append(codes.values)
        latents.append(codes.latents)
        seen += batch.shape[0]
        if seen >= max_rows:
            break
    if not seen:
        raise InputError("no activation rows to measure the latents' typical activations on")
    value, latent = torch.cat(values), torch.cat(latents)
    order = torch.argsort(latent, stable=True)
    value, latent = value[order], latent[order]
    counts = torch.bincount(latent, minlength=sae.n_latents)
    typical = torch.zeros(sae.n_latents)
    for index, chunk in zip(counts.nonzero().squeeze(1).tolist(), torch.split(value, counts[counts > 0].tolist())):
        typical[index] = torch.quantile(chunk, quantile)
    return LatentScales(typical, counts.float() / seen, quantile, seen, sha256)


def save_latent_scales(scales: LatentScales, sae_dir: str | Path) -> Path:
    path = Path(sae_dir) / SCALES_FILE
    write_json_atomic(path, scales.to_json())
    return path


def load_latent_scales(sae_dir: str | Path, sha256: str | None = None) -> LatentScales:
    """Read `latent_scales.json` of an SAE folder and check it belongs to these weights."""
    path = Path(sae_dir) / SCALES_FILE
    if not path.is_file():
        raise InputError(
            f"{path}: missing; measure the latents' typical activations with "
            "`medseglens steer-scales --sae SAE_DIR --store STORE_DIR`"
        )
    try:
        data = json.loads(path.read_text())
        scales = LatentScales(
            torch.tensor(data["typical"], dtype=torch.float32),
            torch.tensor(data["frequency"], dtype=torch.float32),
            float(data["quantile"]),
            int(data["rows"]),
            str(data["sae_sha256"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{path}: unreadable ({exc}); measure it again with `medseglens steer-scales`") from None
    expected = sha256 or sae_sha256(sae_dir)
    if scales.sae_sha256 != expected:
        raise IntegrityError(f"{path}: measured for other SAE weights; measure it again with `medseglens steer-scales`")
    return scales


def latent_scales_for(sae_dir: str | Path, sae: SparseAutoencoder, sha256: str) -> LatentScales | None:
    """The stored typical activations, else measured on the SAE's own training store (saved when the folder allows).

    None when neither exists (multiplicative steering still works; additive and clamp need them).
    """
    if (Path(sae_dir) / SCALES_FILE).is_file():
        return load_latent_scales(sae_dir, sha256)
    from ..sae.extract import complete_store

    store_path = ((getattr(sae.info, "training", None) or {}).get("data") or {}).get("store")
    store = complete_store(store_path) if store_path else None
    if store is None:
        return None
    scales = compute_latent_scales(sae, [store.sample(min(DEFAULT_MAX_ROWS, store.n_rows), seed=0)], sha256)
    try:
        save_latent_scales(scales, sae_dir)
    except OutputError:
        pass  # a read-only SAE folder: use the measurement without keeping it
    return scales
