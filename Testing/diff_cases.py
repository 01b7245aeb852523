"""Planted structure for the diffing tests: real activation stores and SAEs whose latents we know.

The SAEs are real `SparseAutoencoder`s with chosen weights (not trained): latent j
reads and writes channel j (`axis_sae`), or a chosen set of directions. Rows are
written to a real on-disk store with case, population and stratum columns. Each
latent's firing is planted per population and stratum, so every test knows which
latents must come out shared, population-specific or absent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from MedSegLensLib.sae import SAEConfig, SAEInfo, SparseAutoencoder, StoreWriter, save_sae
from MedSegLensLib.sae.strata import STRATUM_CODE

FIRE_THRESHOLD = 0.25


def directions_sae(directions: np.ndarray, k: int = 4, kind: str = "batchtopk") -> SparseAutoencoder:
    """An SAE whose latent j has encoder and decoder row `directions[j]` (unit) and fires above 0.25.

    BatchTopK at inference keeps every pre-activation above its threshold (codes = pre * [pre > 0.25]),
    so each latent fires on its own, however many others fire in the same row, and a code decoded
    and encoded again comes back unchanged.
    """
    w = torch.as_tensor(directions / np.linalg.norm(directions, axis=1, keepdims=True), dtype=torch.float32)
    sae = SparseAutoencoder(SAEConfig(w.shape[1], w.shape[0], k, kind))
    with torch.no_grad():
        sae.W_dec.copy_(w)
        sae.W_enc.copy_(w)
        sae.threshold.fill_(FIRE_THRESHOLD)
    return sae


def axis_sae(d: int, k: int = 4) -> SparseAutoencoder:
    return directions_sae(np.eye(d), k)


def save_planted_sae(sae: SparseAutoencoder, folder: Path, fingerprint: str = "f" * 64, layer: str = "model.0") -> Path:
    return save_sae(sae, folder, SAEInfo(fingerprint, layer))


# rate(population, stratum, case_rng) -> firing probability of one latent in that cell
Rate = Callable[[str, str, np.random.Generator], float]


def write_planted_store(
    path: Path,
    d: int,
    cases: dict[str, int],
    rows_per_stratum: Callable[[str, str], int],
    rates: dict[int, Rate],
    seed: int = 0,
    fingerprint: str = "f" * 64,
    layer: str = "model.0",
):
    """A store whose channel j fires (value 0.5-1.5 on a noise floor) with probability rates[j](pop, stratum, rng)."""
    rng = np.random.default_rng(seed)
    writer = StoreWriter(path, d, dtype="float32", info={"model_fingerprint": fingerprint, "layer": layer})
    number = 0
    for population, n_cases in cases.items():
        for _ in range(n_cases):
            acts, strata = [], []
            case_rng = np.random.default_rng(rng.integers(1 << 31))
            for stratum in ("CSF", "GM", "WM", "NCR", "ED", "ET"):
                n = rows_per_stratum(population, stratum)
                if n == 0:
                    continue
                x = rng.normal(0, 0.03, size=(n, d))
                for channel, rate in rates.items():
                    p = rate(population, stratum, case_rng)
                    x[:, channel] += (rng.random(n) < p) * rng.uniform(0.5, 1.5, n)
                acts.append(x)
                strata += [STRATUM_CODE[stratum]] * n
            x = torch.tensor(np.concatenate(acts), dtype=torch.float32)
            n = x.shape[0]
            coords = rng.integers(0, 16, size=(n, 3))
            writer.add_case(
                f"{population}-{number:03d}",
                population,
                x,
                coords,
                np.zeros(n, np.uint8),
                np.zeros(n, np.uint8),
                np.array(strata, np.uint8),
            )
            number += 1
    return writer.close()
