"""Loss and hand-written sparse gradients of one SAE training batch.

Loss = FVU + auxk_alpha * AuxK, both normalised by the batch's total variance:
    FVU  = |x_hat - x|^2 / |x - mean(x)|^2
    AuxK = |e_hat - (x - x_hat)|^2 / |x - mean(x)|^2 * min(1, dead / k_aux)
where e_hat decodes the k_aux = d_in/2 largest pre-activations among dead latents
(Gao et al. 2024, appendix B.1). The encoder product is the only dense operation;
it runs in row chunks so its output stays cache-sized and the selection happens
while it is hot. Gradients are written into the parameters' `.grad`.

With a `Reducer` over data-parallel ranks, each rank passes its slice of the batch
and every batch-wide quantity (mean, variance, BatchTopK cut, statistics, gradients)
is reduced over ranks, so every rank ends with the whole batch's gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import sparse_ops
from .model import SparseAutoencoder
from .reduce import LOCAL, Reducer

CHUNK_ELEMENTS = 1 << 19  # pre-activation entries per chunk and thread (2 MiB of float32: one core's L2)


@dataclass
class BatchResult:
    fvu: float
    auxk: float
    l0: float
    fired: torch.Tensor  # bool per latent: fired at least once in the batch
    kth_value: float  # smallest selected pre-activation (BatchTopK threshold sample)
    candidates: int = 0


@dataclass
class Selection:
    codes: sparse_ops.SparseCodes
    aux: sparse_ops.SparseCodes | None
    candidates: int = 0  # BatchTopK: entries ranked to find the cut


class BatchTopKCut:
    """Finds BatchTopK's batch-wide cut without ranking every pre-activation.

    Candidates are entries above a floor set a margin below the previous batch's
    cut; only those are ranked. The margin adapts so that candidates number about
    1.1-1.4 times the entries kept. If a batch yields too few candidates the floor
    halves and the batch is redone, so the result is always exact. The first batch
    has no previous cut: its floor comes from the first row chunk's own cut (`start`);
    a floor of 0 would rank every positive pre-activation, which cost as much as
    six training steps.
    """

    def __init__(self, margin: float = 0.25):
        self.margin = margin
        self.floor: float | None = None  # None until the first batch's first chunk sets it

    def start(self, pre: torch.Tensor, k: int, reducer: Reducer = LOCAL) -> None:
        """Floor of the first batch: a margin below the cut of one chunk of rows, the highest over ranks
        (every rank must search above the same floor for the batch-wide cut to be exact)."""
        chunk_cut = pre.reshape(-1).topk(min(pre.numel(), pre.shape[0] * k), sorted=False).values.min()
        estimate = -float(reducer.min(-chunk_cut.float()))
        self.floor = max(0.0, estimate * (1.0 - self.margin))

    def update(self, kth_value: float, candidates: int = 0, kept: int = 0) -> None:
        if kept and candidates > 1.4 * kept:  # halve far from the target (the first batches), else step by 0.7
            self.margin = max(0.005, self.margin * (0.5 if candidates > 2 * kept else 0.7))
        elif kept and candidates < 1.1 * kept:
            self.margin = min(0.5, self.margin * 1.5)
        self.floor = max(0.0, kth_value * (1.0 - self.margin))

    def lower(self) -> None:
        self.margin = min(0.5, self.margin * 2)
        self.floor = self.floor / 2 if self.floor > 1e-6 else 0.0


def _chunks(n_rows: int, n_latents: int):
    """Row ranges whose pre-activations fill each thread's L2: enough rows for an efficient GEMM, and the
    selection reads them while they are still cached."""
    step = max(64, CHUNK_ELEMENTS * torch.get_num_threads() // n_latents)
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


def select(
    sae: SparseAutoencoder,
    centred: torch.Tensor,
    dead: torch.Tensor | None,
    cut: BatchTopKCut | None,
    compute_dtype: torch.dtype = torch.float32,
    reducer: Reducer = LOCAL,
) -> Selection:
    """Encoder product in chunks, top-k (or candidate) selection, AuxK candidates on dead latents.

    BatchTopK's cut is taken over the rows of all ranks (`reducer`)."""
    n_rows, n_latents = centred.shape[0], sae.n_latents
    k = sae.config.k
    k_aux = 0
    if dead is not None and bool(dead.any()):
        dead_idx = dead.nonzero().squeeze(1)
        k_aux = min(max(1, sae.d_in // 2), dead_idx.numel())
    # The bias rides in the product as a column of ones against a column of b_enc: addmm would first copy
    # the bias into every output row, a pass over all pre-activations (about 8 % of the product's time).
    weights = torch.cat([sae.W_enc.detach(), sae.b_enc.detach()[:, None]], 1).to(compute_dtype)
    x = torch.cat([centred, centred.new_ones(n_rows, 1)], 1).to(compute_dtype)
    while True:
        parts, aux_parts = [], []
        for start, stop in _chunks(n_rows, n_latents):
            pre = torch.mm(x[start:stop], weights.t()).float()  # bf16 reductions are slow on the CPU
            if cut is None:
                parts.append(sparse_ops.topk_per_row(pre, k, start))
            else:
                if cut.floor is None:
                    cut.start(pre, k, reducer)
                parts.append(sparse_ops.above(pre, cut.floor, start))
            if k_aux:
                aux_parts.append(_aux_codes(pre[:, dead_idx], dead_idx, k_aux, start))
        codes = sparse_ops.concat(parts, n_rows)
        if cut is None:
            break
        counts = reducer.sum(torch.tensor([n_rows, codes.values.numel()]))
        wanted, candidates = int(counts[0]) * k, int(counts[1])
        if candidates >= wanted or cut.floor == 0.0:
            codes = sparse_ops.keep_largest(codes, wanted, reducer.gather(codes.values))
            break
        cut.lower()
    aux = sparse_ops.concat(aux_parts, n_rows) if k_aux else None
    return Selection(codes, aux, candidates if cut is not None else 0)


def _aux_codes(pre_dead: torch.Tensor, dead_idx: torch.Tensor, k_aux: int, start: int) -> sparse_ops.SparseCodes:
    codes = sparse_ops.topk_per_row(pre_dead, k_aux, start)
    return sparse_ops.SparseCodes(codes.rows, dead_idx[codes.latents], codes.values, codes.n_rows)


def exact_values(sae: SparseAutoencoder, centred: torch.Tensor, codes: sparse_ops.SparseCodes) -> None:
    """Recompute selected pre-activations in float32 (after a reduced-precision selection)."""
    values = sparse_ops.per_entry_dot(codes, centred, sae.W_enc.detach()) + sae.b_enc.detach()[codes.latents]
    codes.values = values.clamp_min(0.0)


def loss_and_gradients(
    sae: SparseAutoencoder,
    x: torch.Tensor,
    dead: torch.Tensor | None = None,
    cut: BatchTopKCut | None = None,
    auxk_alpha: float = 1.0 / 32,
    compute_dtype: torch.dtype = torch.float32,
    reducer: Reducer = LOCAL,
) -> BatchResult:
    """One batch (already scaled): sets `.grad` of all four parameters, returns statistics.

    With a reducer, `x` is this rank's slice; gradients and statistics are the whole batch's."""
    w_dec, w_enc = sae.W_dec.detach(), sae.W_enc.detach()
    centred = x - sae.b_dec.detach()
    sel = select(sae, centred, dead if auxk_alpha > 0 else None, cut, compute_dtype, reducer)
    codes = sel.codes
    if compute_dtype != torch.float32:
        exact_values(sae, centred, codes)

    n_rows, total_var = _batch_variance(centred, reducer)
    residual = sparse_ops.decode(codes, w_dec).sub_(centred)  # x_hat - x = decode - (x - b_dec)
    fvu = residual.pow(2).sum() / total_var
    d_out = residual * (2.0 / total_var)

    # Entries of the main codes and (if any) AuxK codes; decoder gradients read their
    # output gradient from a stacked table [d_out; d_aux] so one grouping serves all.
    rows, latents, values = codes.rows, codes.latents, codes.values
    d_values = sparse_ops.per_entry_dot(codes, d_out, w_dec)
    out_grads = d_out
    auxk = torch.zeros(())
    if sel.aux is not None:
        n_dead, k_aux = int(dead.sum()), max(1, sae.d_in // 2)
        weight = auxk_alpha * min(1.0, n_dead / k_aux)
        aux_err = sparse_ops.decode(sel.aux, w_dec) + residual  # e_hat - (x - x_hat)
        auxk = aux_err.pow(2).sum() / total_var
        d_aux = aux_err * (2.0 * weight / total_var)
        d_values = torch.cat([d_values, sparse_ops.per_entry_dot(sel.aux, d_aux, w_dec)])
        out_grads = torch.cat([d_out, d_aux])
        rows = torch.cat([rows, sel.aux.rows])
        latents = torch.cat([latents, sel.aux.latents])
        values = torch.cat([values, sel.aux.values])
    out_rows = rows if sel.aux is None else torch.cat([codes.rows, sel.aux.rows + x.shape[0]])
    d_pre = d_values * (values > 0)

    groups = sparse_ops.LatentGrouping(latents, sae.n_latents)
    grad_b_enc = torch.bincount(latents, weights=d_pre, minlength=sae.n_latents).float()
    _set_grad(sae.W_enc, groups.sum(rows, d_pre, centred))
    _set_grad(sae.b_enc, grad_b_enc)
    _set_grad(sae.W_dec, groups.sum(out_rows, values, out_grads))
    _set_grad(sae.b_dec, d_out.sum(0) - grad_b_enc @ w_enc)
    if reducer.world_size > 1:
        _sum_gradients(sae, reducer)

    stats = reducer.sum(
        torch.cat(
            [
                torch.bincount(codes.latents, minlength=sae.n_latents).double(),
                torch.tensor([float(fvu), float(auxk), float(codes.values.numel())], dtype=torch.float64),
            ]
        )
    )
    fired = stats[: sae.n_latents] > 0
    fvu, auxk, entries = stats[sae.n_latents :].tolist()
    return BatchResult(fvu, auxk, entries / n_rows, fired, batch_cut(codes, reducer), sel.candidates)


def batch_cut(codes: sparse_ops.SparseCodes, reducer: Reducer = LOCAL) -> float:
    """The smallest selected value over the whole batch (BatchTopK's threshold sample); 0 if none."""
    local = codes.values.min() if codes.values.numel() else torch.tensor(torch.inf)
    smallest = float(reducer.min(local))
    return smallest if math.isfinite(smallest) else 0.0


def _batch_variance(centred: torch.Tensor, reducer: Reducer) -> tuple[float, torch.Tensor]:
    """Rows and total variance |x - mean(x)|^2 of the whole batch, from its sums and sum of squares.

    Taken on the rows less the decoder bias (initialised at their geometric median): their mean is small, so the sum of
    squares barely cancels, and PyTorch's float32 sums are pairwise (relative error ~1e-7 at 33 M
    entries). Converting the batch to float64 first cost 4-5 ms a step (4096 x 256, one thread)."""
    moments = reducer.sum(
        torch.cat(
            [
                centred.sum(0).double(),
                centred.pow(2).sum().double().reshape(1),
                torch.tensor([float(centred.shape[0])], dtype=torch.float64),
            ]
        )
    )
    n_rows = float(moments[-1])
    mean = moments[:-2] / n_rows
    return n_rows, (moments[-2] - n_rows * mean.pow(2).sum()).float().clamp_min(1e-12)


def _set_grad(param: torch.nn.Parameter, grad: torch.Tensor) -> None:
    param.grad = grad.to(param.dtype)


def _sum_gradients(sae: SparseAutoencoder, reducer: Reducer) -> None:
    """Add up the ranks' partial gradients (each is already normalised by the whole batch)."""
    params = list(sae.parameters())
    total = reducer.sum(torch.cat([p.grad.reshape(-1) for p in params]))
    for param, part in zip(params, total.split([p.numel() for p in params])):
        param.grad = part.view_as(param).clone()
