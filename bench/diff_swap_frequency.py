"""Why do latents survive feature swapping? Relate survival to firing count and to near-duplicate latents.

    python bench/diff_swap_frequency.py --swap-csv OUT/unet/saes_adult_ssa/swap_ssa->adult.csv --sae OUT/unet/sae_ssa

Reads one `swap_<A>-><B>.csv` of `medseglens diff saes` and A's SAE (the encoding one).
For shared (partner cosine >= threshold) and non-shared latents firing on >= min-fired
rows it prints the median firing count, the Spearman correlation of the swap r with
the firing count, each latent's nearest other decoder row in A (cosine), and the
Spearman correlation of r with that cosine.
"""

from __future__ import annotations

import argparse
import csv

import numpy as np
import torch
from scipy.stats import spearmanr

from MedSegLensLib.sae import load_sae


def nearest_own_cosine(sae) -> np.ndarray:
    """Per latent: the largest decoder cosine with any other latent of the same SAE."""
    w = torch.nn.functional.normalize(sae.W_dec.detach().float(), dim=1)
    cos = (w @ w.T).numpy()
    np.fill_diagonal(cos, -1.0)
    return cos.max(1)


def number(text: str) -> float:
    return float(text) if text else np.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--swap-csv", required=True)
    parser.add_argument("--sae", required=True, help="the SAE that encoded (A of A->B)")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--min-fired", type=int, default=20)
    args = parser.parse_args()
    with open(args.swap_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    latent = np.array([int(r["latent"]) for r in rows])
    fired = np.array([number(r["fired"]) for r in rows])
    r = np.nan_to_num(np.array([number(r["r"]) for r in rows]), nan=0.0)
    partner = np.nan_to_num(np.array([number(r["partner_cosine"]) for r in rows]), nan=-1.0)
    nearest = nearest_own_cosine(load_sae(args.sae))[latent]
    used = fired >= args.min_fired
    shared = used & (partner >= args.threshold)
    for name, mask in (("shared", shared), ("not shared", used & ~shared)):
        print(
            f"{name:>10}: {int(mask.sum())} latents, median fired {np.median(fired[mask]):g}, "
            f"spearman(r, fired) {spearmanr(r[mask], fired[mask])[0]:.3f}, "
            f"median nearest own cosine {np.median(nearest[mask]):.3f}, "
            f"spearman(r, nearest own cosine) {spearmanr(r[mask], nearest[mask])[0]:.3f}"
        )


if __name__ == "__main__":
    main()
