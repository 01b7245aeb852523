"""How faithfully an SAE reconstructs held-out activation rows.

All sums are accumulated in float64 over a single pass of a row source, so a
store larger than memory can be evaluated and long sums stay exact enough:
- explained variance, pooled (1 - sum err^2 / sum (x - mean)^2) and the mean over
  channels of each channel's explained variance; FVU = 1 - pooled;
- L0 per row: mean and 95th percentile (exact, from a histogram of counts);
- firing frequency of each latent; the fraction never firing (dead on these rows);
  a histogram of log10 firing frequency.
"Dice recovered" needs a backbone with the SAE spliced in: `dice_recovered` takes
a callable that runs the network in each mode and returns Dice per region.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .model import SparseAutoencoder

LOG10_BINS = np.arange(-7.0, 0.5, 0.5)  # firing-frequency histogram edges: 1e-7 ... 1


@dataclass
class FidelityReport:
    rows: int
    explained_variance: float
    explained_variance_per_channel_mean: float
    fvu: float
    l0_mean: float
    l0_p95: float
    dead_fraction: float
    firing_frequency_log10_edges: list[float]
    firing_frequency_counts: list[int]

    def to_dict(self) -> dict:
        return asdict(self)


class FidelityAccumulator:
    """Float64 sums over batches of rows, added one at a time (e.g. one case after another)."""

    def __init__(self, sae: SparseAutoencoder):
        self.sae = sae
        d, m = sae.d_in, sae.n_latents
        self.rows = 0
        self.sum_x = torch.zeros(d, dtype=torch.float64)
        self.sum_x2 = torch.zeros(d, dtype=torch.float64)
        self.sum_err2 = torch.zeros(d, dtype=torch.float64)
        self.fires = torch.zeros(m, dtype=torch.int64)
        self.l0_hist = torch.zeros(m + 1, dtype=torch.int64)
        self.shift: torch.Tensor | None = None  # first batch's mean: sums of (x - shift) avoid cancellation

    @torch.no_grad()
    def add(self, batch: torch.Tensor) -> None:
        if batch.shape[0] == 0:
            return
        x = batch.float()
        codes = self.sae.encode_sparse(x)
        recon = self.sae.decode_sparse(codes)
        xd = x.double()
        if self.shift is None:
            self.shift = xd.mean(0)
        recon_d, xd = recon.double() - self.shift, xd - self.shift
        self.sum_x += xd.sum(0)
        self.sum_x2 += xd.pow(2).sum(0)
        self.sum_err2 += (recon_d - xd).pow(2).sum(0)
        self.fires += torch.bincount(codes.latents, minlength=self.sae.n_latents)
        self.l0_hist += torch.bincount(codes.l0_per_row(), minlength=self.sae.n_latents + 1)
        self.rows += x.shape[0]

    def report(self) -> FidelityReport:
        n, m = self.rows, self.sae.n_latents
        if n == 0:
            raise ValueError("no rows to evaluate")
        var = self.sum_x2 - self.sum_x.pow(2) / n  # per channel, times n
        pooled = 1.0 - float(self.sum_err2.sum() / var.sum())
        live = var > 1e-12 * var.max()
        per_channel = float((1.0 - self.sum_err2[live] / var[live]).mean())
        cdf = torch.cumsum(self.l0_hist, 0).double() / n
        l0_p95 = float(torch.searchsorted(cdf, torch.tensor([0.95], dtype=torch.float64))[0])
        l0_mean = float((torch.arange(m + 1, dtype=torch.float64) * self.l0_hist).sum() / n)
        freq = self.fires.double() / n
        alive = freq[freq > 0]
        counts, _ = np.histogram(np.log10(alive.numpy()), bins=LOG10_BINS)
        return FidelityReport(
            rows=n,
            explained_variance=pooled,
            explained_variance_per_channel_mean=per_channel,
            fvu=1.0 - pooled,
            l0_mean=l0_mean,
            l0_p95=l0_p95,
            dead_fraction=float((self.fires == 0).double().mean()),
            firing_frequency_log10_edges=LOG10_BINS.tolist(),
            firing_frequency_counts=counts.tolist(),
        )


def evaluate_fidelity(
    sae: SparseAutoencoder, batches: Iterable[torch.Tensor], max_rows: int | None = None
) -> FidelityReport:
    """One pass over `batches` (e.g. `source.scan(4096)`) of held-out rows."""
    accumulator = FidelityAccumulator(sae)
    for batch in batches:
        if max_rows is not None and accumulator.rows >= max_rows:
            break
        accumulator.add(batch if max_rows is None else batch[: max_rows - accumulator.rows])
    return accumulator.report()


def dice_recovered(dice_with: Callable[[str], Mapping[str, float]]) -> dict[str, float]:
    """(Dice_SAE - Dice_zero) / (Dice_original - Dice_zero) per region.

    `dice_with(mode)` runs the segmentation with the hooked layer's output left
    alone ("original"), replaced by the SAE reconstruction ("sae") or by zeros
    ("zero_ablation") and returns Dice per region (e.g. {"WT": .., "TC": .., "ET": ..}).
    A region where zero ablation costs nothing has no defined recovery (NaN).
    """
    original, sae, zero = dice_with("original"), dice_with("sae"), dice_with("zero_ablation")
    recovered = {}
    for region in original:
        gap = original[region] - zero[region]
        recovered[region] = float((sae[region] - zero[region]) / gap) if abs(gap) > 1e-9 else float("nan")
    return recovered
