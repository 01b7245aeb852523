"""Optimal one-to-one matching of two latent sets by a similarity (decoder cosine, activation correlation).

`match_dense` solves the full assignment with scipy's `linear_sum_assignment`: exact,
but it needs the whole n_a x n_b matrix and time that grows roughly cubically, which
is too slow at 16k latents. `match_pruned` keeps only candidate pairs (each latent's
`neighbours` most similar partners, from both sides), solves the sparse assignment with
`scipy.sparse.csgraph.min_weight_full_bipartite_matching`, and pairs the leftovers
(latents whose candidates were all taken) with a dense assignment on their small block.

The sparse problem is made always solvable by giving every latent an "unmatched" option
(a classic augmentation: a dummy partner per latent, plus dummy-to-dummy edges that
mirror the candidate edges). Leaving a pair unmatched is worth the lowest candidate
similarity, so any candidate pair is at least as good as no pair. The result equals the
dense optimum whenever the dense optimum uses only candidate pairs, which is the case
for every pair that is among both latents' top neighbours (e.g. all well-matched
pairs); `bench/diff_matching.py` measures the agreement at 4k-16k latents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from ..errors import ParameterError


class SimilaritySource(Protocol):
    """A similarity between latents of side A (rows) and side B (columns), readable in blocks."""

    n_a: int
    n_b: int

    def rows(self, start: int, stop: int) -> np.ndarray: ...

    def submatrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray: ...


class DenseSimilarity:
    """An already computed (n_a, n_b) similarity matrix."""

    def __init__(self, matrix: np.ndarray):
        self.matrix = np.asarray(matrix, dtype=np.float64)
        if self.matrix.ndim != 2:
            raise ParameterError(f"similarity must be a 2-D matrix, got shape {self.matrix.shape}")
        self.n_a, self.n_b = self.matrix.shape

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.matrix[start:stop]

    def submatrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.matrix[np.ix_(a, b)]


class CosineSimilarity:
    """Cosine similarity of two sets of direction vectors (e.g. SAE decoder rows), computed in blocks."""

    def __init__(self, a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor):
        self.a = _unit_rows(a)
        self.b = _unit_rows(b)
        if self.a.shape[1] != self.b.shape[1]:
            raise ParameterError(
                f"cannot compare directions of width {self.a.shape[1]} and {self.b.shape[1]}; "
                "decoder cosine needs two SAEs on the same layer"
            )
        self.n_a, self.n_b = self.a.shape[0], self.b.shape[0]

    def rows(self, start: int, stop: int) -> np.ndarray:
        return (self.a[start:stop] @ self.b.T).numpy()

    def submatrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (self.a[torch.as_tensor(a)] @ self.b[torch.as_tensor(b)].T).double().numpy()


def _unit_rows(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(x).detach().float()
    return t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)


@dataclass
class Matching:
    """Pairs (a[i], b[i]) with their similarity; latents of either side may stay unpaired (rectangular case)."""

    a: np.ndarray
    b: np.ndarray
    similarity: np.ndarray
    n_a: int
    n_b: int
    method: str

    def partner_of_a(self) -> np.ndarray:
        """Index of each A latent's partner in B, -1 where it has none."""
        partner = np.full(self.n_a, -1, dtype=np.int64)
        partner[self.a] = self.b
        return partner

    def partner_of_b(self) -> np.ndarray:
        partner = np.full(self.n_b, -1, dtype=np.int64)
        partner[self.b] = self.a
        return partner

    def above(self, threshold: float) -> np.ndarray:
        """Mask over pairs whose similarity reaches `threshold`."""
        return self.similarity >= threshold

    def orphans_a(self, threshold: float) -> np.ndarray:
        """A latents without a partner at or above `threshold`."""
        kept = np.zeros(self.n_a, dtype=bool)
        kept[self.a[self.above(threshold)]] = True
        return np.flatnonzero(~kept)

    def orphans_b(self, threshold: float) -> np.ndarray:
        kept = np.zeros(self.n_b, dtype=bool)
        kept[self.b[self.above(threshold)]] = True
        return np.flatnonzero(~kept)

    def total(self) -> float:
        return float(self.similarity.sum())

    def sorted_by_a(self) -> Matching:
        order = np.argsort(self.a, kind="stable")
        return Matching(self.a[order], self.b[order], self.similarity[order], self.n_a, self.n_b, self.method)


def match_dense(source: SimilaritySource) -> Matching:
    """Exact maximum-similarity assignment on the full matrix."""
    matrix = source.rows(0, source.n_a).astype(np.float64)
    a, b = linear_sum_assignment(matrix, maximize=True)
    return Matching(a.astype(np.int64), b.astype(np.int64), matrix[a, b], source.n_a, source.n_b, "dense").sorted_by_a()


def candidate_pairs(
    source: SimilaritySource, neighbours: int, block_rows: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, similarity) of the pairs where b is among a's top `neighbours` or a among b's, in key order.

    Reads the similarity one block of rows at a time; the column top-k is merged block by block.
    """
    k_row, k_col = min(neighbours, source.n_b), min(neighbours, source.n_a)
    col_values = None
    col_index = torch.zeros((k_col, source.n_b), dtype=torch.int64)
    found_a, found_b, found_s = [], [], []
    for start in range(0, source.n_a, block_rows):
        stop = min(source.n_a, start + block_rows)
        block = torch.as_tensor(source.rows(start, stop))
        values, index = block.topk(k_row, dim=1)
        found_a.append(torch.arange(start, stop).repeat_interleave(k_row))
        found_b.append(index.reshape(-1))
        found_s.append(values.reshape(-1))
        block_values, block_index = block.topk(min(k_col, stop - start), dim=0)
        if col_values is None:
            col_values = torch.full((k_col, source.n_b), -torch.inf, dtype=block.dtype)
        merged_v = torch.cat([col_values, block_values], 0)
        merged_i = torch.cat([col_index, block_index + start], 0)
        col_values, pick = merged_v.topk(k_col, dim=0)
        col_index = merged_i.gather(0, pick)
    found_a.append(col_index.reshape(-1))
    found_b.append(torch.arange(source.n_b).repeat(k_col))
    found_s.append(col_values.reshape(-1))
    a, b, s = (torch.cat(x).numpy() for x in (found_a, found_b, found_s))
    _, first = np.unique(a * source.n_b + b, return_index=True)
    return a[first], b[first], s[first].astype(np.float64)


def match_pruned(source: SimilaritySource, neighbours: int = 8, block_rows: int = 2048) -> Matching:
    """Assignment over candidate pairs (see the module docstring), completed densely on the leftovers."""
    if neighbours < 1:
        raise ParameterError(f"neighbours must be >= 1, got {neighbours}")
    n_a, n_b = source.n_a, source.n_b
    if n_a == 0 or n_b == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Matching(empty, empty, np.zeros(0), n_a, n_b, "pruned")
    ca, cb, cs = candidate_pairs(source, neighbours, block_rows)
    floor = float(cs.min())
    unmatched_cost = (3.0 - floor) / 2.0  # an unmatched pair then counts as similarity `floor` (see below)
    # Rows: real A latents, then one dummy per B latent. Columns: real B latents, then one dummy per A latent.
    # A matched pair costs (2 - s) + 1 (its mirrored dummy-dummy edge); an unmatched A and B latent cost
    # 2 * unmatched_cost = 3 - floor. So the solver maximises the summed similarity, unmatched pairs = floor.
    rows = np.concatenate([ca, np.arange(n_a), n_a + np.arange(n_b), n_a + cb])
    cols = np.concatenate([cb, n_b + np.arange(n_a), np.arange(n_b), n_b + ca])
    cost = np.concatenate([2.0 - cs, np.full(n_a + n_b, unmatched_cost), np.ones(ca.size)])
    graph = coo_matrix((cost, (rows, cols)), shape=(n_a + n_b, n_a + n_b)).tocsr()
    r, c = min_weight_full_bipartite_matching(graph)
    real = (r < n_a) & (c < n_b)
    a, b = r[real].astype(np.int64), c[real].astype(np.int64)
    keys = ca * n_b + cb  # sorted: candidate_pairs returns them in key order
    similarity = cs[np.searchsorted(keys, a * n_b + b)]
    left_a = np.setdiff1d(np.arange(n_a), a)
    left_b = np.setdiff1d(np.arange(n_b), b)
    if left_a.size and left_b.size:
        block = source.submatrix(left_a, left_b)
        la, lb = linear_sum_assignment(block, maximize=True)
        a = np.concatenate([a, left_a[la]])
        b = np.concatenate([b, left_b[lb]])
        similarity = np.concatenate([similarity, block[la, lb]])
    return Matching(a, b, np.asarray(similarity, dtype=np.float64), n_a, n_b, "pruned").sorted_by_a()


def match_latents(
    source: SimilaritySource, method: str = "auto", neighbours: int = 8, dense_limit: int = 2048
) -> Matching:
    """`dense`, `pruned`, or `auto` (dense up to `dense_limit` latents per side, pruned above)."""
    if method == "auto":
        method = "dense" if max(source.n_a, source.n_b) <= dense_limit else "pruned"
    if method == "dense":
        return match_dense(source)
    if method == "pruned":
        return match_pruned(source, neighbours)
    raise ParameterError(f"matching method {method!r} is unknown; use auto, dense or pruned")
