"""Sparse building blocks of the SAE training step, written for the CPU.

Only the encoder's pre-activations are a dense matrix product. Everything after
the top-k selection touches only the selected (row, latent) entries: decoding is
an `embedding_bag` over decoder rows, and the weight gradients of both encoder
and decoder are "bags per latent" (`embedding_bag` over the batch rows, grouped by
latent), so no (rows x latents) gradient and no (entries x d_in) temporary is
ever built. Entries are kept as flat `SparseCodes` (row, latent, value) sorted
by row, which covers fixed-k TopK and variable-count BatchTopK alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class SparseCodes:
    """Selected latents of a batch: entry i is latent `latents[i]` of row `rows[i]`."""

    rows: torch.Tensor  # int64, sorted ascending
    latents: torch.Tensor  # int64
    values: torch.Tensor  # float32, > 0
    n_rows: int

    @property
    def offsets(self) -> torch.Tensor:
        """Start of each row's entries (for `embedding_bag`)."""
        counts = torch.bincount(self.rows, minlength=self.n_rows)
        return torch.cumsum(counts, 0) - counts

    def l0_per_row(self) -> torch.Tensor:
        return torch.bincount(self.rows, minlength=self.n_rows)

    def to_dense(self, n_latents: int) -> torch.Tensor:
        dense = self.values.new_zeros(self.n_rows, n_latents)
        dense[self.rows, self.latents] = self.values
        return dense


def topk_per_row(pre: torch.Tensor, k: int, row_offset: int = 0) -> SparseCodes:
    """TopK: the k largest pre-activations of each row (in no order), ReLU applied afterwards.

    On one thread NumPy's `argpartition` takes half the time of `torch.topk` (0.85 against 1.64 ms
    for 128 x 4096); on more, `torch.topk` runs in parallel and NumPy would not."""
    if _one_thread(pre):
        array = _numpy_float32(pre)
        picked = np.argpartition(array, array.shape[1] - k, axis=1)[:, array.shape[1] - k :]
        values, latents = torch.from_numpy(np.take_along_axis(array, picked, axis=1)), _long(picked)
    else:
        values, latents = pre.topk(k, dim=1, sorted=False)
    rows = torch.arange(row_offset, row_offset + pre.shape[0]).repeat_interleave(k)
    return _positive(SparseCodes(rows, latents.reshape(-1), values.reshape(-1).float(), pre.shape[0]))


BLOCK = 32  # pre-activations per block in the parallel search's pre-filter


def above(pre: torch.Tensor, threshold: float, row_offset: int = 0) -> SparseCodes:
    """All pre-activations strictly above `threshold` (>= 0): JumpReLU-style codes, in row-major order.

    On one thread the search runs in NumPy, whose `>` and `flatnonzero` are SIMD loops: PyTorch's
    `>` and `nonzero` cost about 6 times as much per entry, as much as half the encoder product in
    training (docs/sae.md, "Benchmark"). On more threads PyTorch's run in parallel and NumPy's would
    be the serial part of every step; there blocks of `BLOCK` latents whose maximum clears the
    threshold are found first and only those are searched (half the time of a plain `nonzero`).
    Both compare the threshold in float32, as `pre > threshold` does, and give its entries in order."""
    threshold = max(float(threshold), 0.0)
    n_latents = pre.shape[1]
    if _one_thread(pre):
        array = _numpy_float32(pre).reshape(-1)
        found = np.flatnonzero(array > np.float32(threshold))
        where, values = _long(found), torch.from_numpy(array[found])
    else:
        flat = pre.detach().reshape(-1)
        if n_latents % BLOCK:
            where = (flat > threshold).nonzero().squeeze(1)
        else:
            blocks = flat.view(-1, BLOCK)
            hit = (blocks.amax(1) > threshold).nonzero().squeeze(1)
            inside = (blocks.index_select(0, hit) > threshold).nonzero()
            where = hit.index_select(0, inside[:, 0]) * BLOCK + inside[:, 1]
        values = flat.index_select(0, where).float()
    return SparseCodes(where // n_latents + row_offset, where % n_latents, values, pre.shape[0])


def _one_thread(pre: torch.Tensor) -> bool:
    """Whether NumPy's single-threaded loops are the faster choice for these CPU pre-activations."""
    return pre.device.type == "cpu" and torch.get_num_threads() == 1


def _numpy_float32(pre: torch.Tensor) -> np.ndarray:
    """A float32 NumPy view of the pre-activations (a copy only if they are not float32 and contiguous)."""
    return pre.detach().float().contiguous().numpy()


def _long(indices: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(indices).long()  # NumPy's intp is 32-bit on Windows before NumPy 2


def concat(parts: list[SparseCodes], n_rows: int) -> SparseCodes:
    """Join per-chunk codes (chunks in row order, rows already offset)."""
    return SparseCodes(
        torch.cat([p.rows for p in parts]),
        torch.cat([p.latents for p in parts]),
        torch.cat([p.values for p in parts]),
        n_rows,
    )


def keep_largest(codes: SparseCodes, count: int, all_values: torch.Tensor | None = None) -> SparseCodes:
    """The `count` largest entries of `codes`, still sorted by row (BatchTopK's batch-wide cut).

    `all_values`: the candidate values of the whole batch when `codes` holds one rank's slice."""
    values = codes.values if all_values is None else all_values
    n = values.numel()
    if n <= count:
        return codes
    cut = float(np.partition(_numpy_float32(values), n - count)[n - count])  # 10x faster than torch.kthvalue
    return _filter(codes, codes.values >= cut)


def _positive(codes: SparseCodes) -> SparseCodes:
    keep = codes.values > 0
    return codes if bool(keep.all()) else _filter(codes, keep)


def _filter(codes: SparseCodes, keep: torch.Tensor) -> SparseCodes:
    where = keep.nonzero().squeeze(1)  # once, not once per field as boolean indexing would
    rows, latents, values = (t.index_select(0, where) for t in (codes.rows, codes.latents, codes.values))
    return SparseCodes(rows, latents, values, codes.n_rows)


def decode(codes: SparseCodes, w_dec: torch.Tensor) -> torch.Tensor:
    """sum_i value_i * w_dec[latent_i] per row, without the bias."""
    return F.embedding_bag(codes.latents, w_dec, codes.offsets, mode="sum", per_sample_weights=codes.values)


def per_entry_dot(codes: SparseCodes, rows_matrix: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """rows_matrix[row_i] . table[latent_i] for every entry, without gathering either side.

    This is the kernel autograd uses for `embedding_bag`'s per-sample-weight gradient.
    """
    return torch.ops.aten._embedding_bag_per_sample_weights_backward(
        rows_matrix, table, codes.latents, codes.offsets, codes.rows, 0
    )


class LatentGrouping:
    """Entries grouped by latent, computed once and shared by every per-latent sum of a batch."""

    def __init__(self, latents: torch.Tensor, n_latents: int):
        if n_latents <= 1 << 15:  # NumPy's stable sort of int16 is a radix sort: 0.6 ms for 131 k, torch 1.7 ms
            self.order = torch.from_numpy(np.argsort(latents.numpy().astype(np.int16), kind="stable")).long()
        else:
            self.order = torch.argsort(latents.to(torch.int32))  # int32 sorts about twice as fast as int64
        counts = torch.bincount(latents, minlength=n_latents)
        self.offsets = torch.cumsum(counts, 0) - counts

    def sum(self, rows: torch.Tensor, weights: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        """G[j] = sum over entries of latent j of weight * data[row]: sparse (latents x rows) @ data."""
        return F.embedding_bag(
            rows.index_select(0, self.order),
            data,
            self.offsets,
            mode="sum",
            per_sample_weights=weights.index_select(0, self.order),
        )
