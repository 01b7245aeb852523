"""Streaming Pearson correlation between paired sparse code columns, pooled and per case.

Both feature swapping (a latent before vs after a round trip) and cross-architecture
diffing need correlations of sparse, mostly-zero columns over many rows. Only
nonzero entries are touched: sums and squared sums per column, and the cross
product of the pairs that are nonzero in both; zeros contribute nothing.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def pearson_from_sums(n, sum_a, sum_b, sum_aa, sum_bb, sum_ab) -> np.ndarray:
    """Pearson r from sums; 0 where side A varies but side B does not, NaN where A is constant."""
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        var_a = sum_aa - sum_a * sum_a / n
        var_b = sum_bb - sum_b * sum_b / n
        cov = sum_ab - sum_a * sum_b / n
        r = cov / np.sqrt(var_a * var_b)
    r = np.where(var_b <= 1e-12 * np.maximum(sum_bb, 1e-300), 0.0, r)
    r = np.where(var_a <= 1e-12 * np.maximum(sum_aa, 1e-300), np.nan, r)
    return np.clip(r, -1.0, 1.0)


class PairedColumnTally:
    """Sums for r(a[:, j], b[:, j]) for every column j, over all rows and within each case."""

    def __init__(self, n_cases: int, n_columns: int):
        self.n_cases, self.n_columns = n_cases, n_columns
        self.rows = np.zeros(n_cases)
        shape = (n_cases, n_columns)
        self.sum_a, self.sum_b = np.zeros(shape), np.zeros(shape)
        self.sum_aa, self.sum_bb, self.sum_ab = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        self.nonzero_a = np.zeros(shape)

    def add(self, a: sp.csr_matrix, b: sp.csr_matrix, case_index: np.ndarray) -> None:
        """Rows of `a` and `b` (same shape) belong to cases `case_index`."""
        case_index = np.asarray(case_index, dtype=np.int64)
        np.add.at(self.rows, case_index, 1.0)
        for matrix, total, squares in ((a, self.sum_a, self.sum_aa), (b, self.sum_b, self.sum_bb)):
            coo = matrix.tocoo()
            cases = case_index[coo.row]
            np.add.at(total, (cases, coo.col), coo.data)
            np.add.at(squares, (cases, coo.col), coo.data * coo.data)
        coo = a.tocoo()
        np.add.at(self.nonzero_a, (case_index[coo.row], coo.col), (coo.data != 0).astype(np.float64))
        both = a.multiply(b).tocoo()
        np.add.at(self.sum_ab, (case_index[both.row], both.col), both.data)

    def pooled(self) -> np.ndarray:
        """Pearson r of each column pair over every row."""
        return pearson_from_sums(self.rows.sum(), *(x.sum(0) for x in self._sums()))

    def per_case(self) -> np.ndarray:
        """(cases, columns) Pearson r within each case."""
        return pearson_from_sums(self.rows[:, None], *self._sums())

    def mean_within_case(self, min_nonzero: int = 3) -> np.ndarray:
        """Mean within-case r over the cases where side A has at least `min_nonzero` nonzero rows."""
        r = self.per_case()
        usable = (self.nonzero_a >= min_nonzero) & ~np.isnan(r)
        counts = usable.sum(0)
        total = np.where(usable, r, 0.0).sum(0)
        return np.divide(total, counts, out=np.full(self.n_columns, np.nan), where=counts > 0)

    def _sums(self):
        return self.sum_a, self.sum_b, self.sum_aa, self.sum_bb, self.sum_ab
