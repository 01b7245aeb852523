"""Match the latents of two different networks (e.g. U-Net and SegFormer) run on the same volumes.

Their SAEs live in different activation spaces, so latents are compared by where they
fire. Per case, both latent maps (sparse codes on each network's layer grid) are
resampled to one common grid (the finer layer grid; trilinear, in world coordinates),
voxels are drawn per stratum (tumour subregions and tissue classes, as for
activation capture), and the sums and cross-products of every
latent pair are accumulated from the sparse codes: one pass over the cases, nothing
dense but the (latents A x latents B) cross-product table. The Pearson correlation
matrix is then matched one-to-one with an optimal assignment.

Significance: a permutation null that keeps spatial autocorrelation. B's map is cut
into blocks of about `block_mm` a side (whole common-grid voxels per axis) and the blocks are shuffled within each
case (brain blocks among brain blocks, background among background), so B keeps its
texture, blob sizes and brain outline but loses its alignment with A. Each null
replicate is matched again like the real data; the pooled null matched correlations
give each real pair a p-value (Benjamini-Hochberg across pairs), and the (1 - alpha)
quantile of each replicate's largest matched correlation gives a family-wise threshold.
A voxel-wise shuffle would instead treat correlated neighbours as independent and
call unrelated smooth maps significant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..data import Grid
from ..errors import ParameterError
from ..sae.capture import layer_voxels_in
from ..sae.encode import CaseCodes
from ..sae.strata import DEFAULT_QUOTAS, STRATUM_CODE, sample_by_stratum
from .matching import DenseSimilarity, Matching, match_latents
from .resample import finer_grid, resample_codes
from .sparse_tally import pearson_from_sums
from .stats import benjamini_hochberg

MAX_TABLE_ENTRIES = 8192 * 8192  # float64 cross-product table of at most 512 MiB


@dataclass
class CaseLatentMaps:
    """Both networks' sparse codes for one case: voxels of each layer grid (C order) x latents."""

    case_id: str
    population: str
    codes_a: sp.csr_matrix
    grid_a: Grid
    codes_b: sp.csr_matrix
    grid_b: Grid
    case_grid: Grid
    strata: np.ndarray  # stratum code of every case-grid voxel (sae.strata.voxel_strata)

    @classmethod
    def from_codes(cls, a: CaseCodes, b: CaseCodes, strata: np.ndarray, population: str) -> CaseLatentMaps:
        """From `encode_case` results of the two networks on the same case."""
        return cls(a.case_id or b.case_id, population, codes_csr(a), a.grid, codes_csr(b), b.grid, a.case_grid, strata)


def codes_csr(codes: CaseCodes) -> sp.csr_matrix:
    """A case's sparse codes as a (layer voxels x latents) CSR matrix."""
    return sp.csr_matrix(
        (codes.value.numpy().astype(np.float64), (codes.voxel.numpy(), codes.latent.numpy())),
        shape=(codes.n_voxels, codes.n_latents),
    )


@dataclass(frozen=True)
class ArchDiffSettings:
    quotas: Mapping[str, int] | None = None  # voxels per stratum and case (default: capture's quotas)
    seed: int = 0
    min_active_rows: int = 20  # a latent must fire on this many sampled voxels to be matched
    n_permutations: int = 50
    block_mm: float = 32.0  # permutation block edge (rounded to whole common-grid voxels per axis)
    alpha: float = 0.05
    method: str = "auto"
    neighbours: int = 8

    def __post_init__(self) -> None:
        if self.block_mm <= 0 or self.n_permutations < 1 or self.min_active_rows < 1:
            raise ParameterError("block size must be > 0 mm; permutations and min_active_rows must be >= 1")
        if not 0 < self.alpha < 1:
            raise ParameterError(f"alpha must be between 0 and 1, got {self.alpha}")


class CrossCorrelation:
    """Streaming sums for the Pearson correlation of every (A latent, B latent) pair over rows."""

    def __init__(self, n_a: int, n_b: int):
        if n_a * n_b > MAX_TABLE_ENTRIES:
            raise ParameterError(
                f"{n_a} x {n_b} latents need a {n_a * n_b * 8 / 2**30:.1f} GiB cross-product table; "
                "use SAEs with at most 8192 latents for architecture diffing"
            )
        self.n = 0
        self.sum_a, self.sum_aa, self.nonzero_a = np.zeros(n_a), np.zeros(n_a), np.zeros(n_a)
        self.sum_b, self.sum_bb, self.nonzero_b = np.zeros(n_b), np.zeros(n_b), np.zeros(n_b)
        self.sum_ab = np.zeros((n_a, n_b))

    def add(self, a: sp.csr_matrix, b: sp.csr_matrix) -> None:
        self.n += a.shape[0]
        for m, total, squares, nonzero in (
            (a, self.sum_a, self.sum_aa, self.nonzero_a),
            (b, self.sum_b, self.sum_bb, self.nonzero_b),
        ):
            total += np.asarray(m.sum(0)).ravel()
            squares += np.asarray(m.multiply(m).sum(0)).ravel()
            nonzero += np.bincount(m.indices[m.data != 0], minlength=total.size)
        product = (a.T.tocsr() @ b).tocoo()
        self.sum_ab[product.row, product.col] += product.data

    def correlation(self, index_a: np.ndarray, index_b: np.ndarray) -> np.ndarray:
        r = pearson_from_sums(
            self.n,
            self.sum_a[index_a, None],
            self.sum_b[None, index_b],
            self.sum_aa[index_a, None],
            self.sum_bb[None, index_b],
            self.sum_ab[np.ix_(index_a, index_b)],
        )
        return np.nan_to_num(r, nan=0.0)


def block_permutation(
    indices: np.ndarray,
    grid: tuple[int, int, int],
    block: int | tuple[int, int, int],
    brain_blocks: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Where each sampled voxel's value is read from in the null: same offset in a shuffled block.

    Blocks are shuffled within their class (`brain_blocks`, a bool per block); a target
    outside the grid (the padding of edge blocks) returns prod(grid), the index of a zero row.
    """
    grid_arr = np.asarray(grid)
    block = np.broadcast_to(np.asarray(block, dtype=np.int64), (3,))
    counts = -(-grid_arr // block)
    coords = np.stack(np.unravel_index(indices, grid), 1)
    blocks = np.ravel_multi_index((coords // block).T, counts)
    mapping = np.arange(int(np.prod(counts)))
    for members in (np.flatnonzero(brain_blocks), np.flatnonzero(~brain_blocks)):
        mapping[members] = members[rng.permutation(members.size)]
    target = np.stack(np.unravel_index(mapping[blocks], counts), 1) * block + coords % block
    inside = (target < grid_arr).all(1)
    out = np.full(indices.size, int(np.prod(grid)), dtype=np.int64)
    out[inside] = np.ravel_multi_index(target[inside].T, grid)
    return out


def block_voxels(grid: Grid, block_mm: float) -> tuple[int, int, int]:
    """Block edge per axis in voxels of `grid`: block_mm / spacing, rounded, at least 1."""
    return tuple(max(1, int(round(block_mm / spacing))) for spacing in grid.spacing)


def _brain_blocks(strata: np.ndarray, block: int | tuple[int, int, int]) -> np.ndarray:
    """Per block of the grid: True when at least half of its (in-grid) voxels are not background."""
    block = np.broadcast_to(np.asarray(block, dtype=np.int64), (3,))
    counts = -(-np.asarray(strata.shape) // block)
    padded = np.zeros(counts * block, dtype=np.float64)
    valid = np.zeros_like(padded)
    sx, sy, sz = strata.shape
    padded[:sx, :sy, :sz] = strata != STRATUM_CODE["background"]
    valid[:sx, :sy, :sz] = 1
    shape = (counts[0], block[0], counts[1], block[1], counts[2], block[2])
    brain = padded.reshape(shape).sum((1, 3, 5))
    return (brain >= 0.5 * valid.reshape(shape).sum((1, 3, 5))).ravel()


@dataclass
class _CachedCase:
    rows_a: sp.csr_matrix
    codes_b: sp.csr_matrix  # whole common grid plus one zero row at the end
    indices: np.ndarray
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    brain_blocks: np.ndarray


@dataclass
class ArchDiffResult:
    matching: Matching  # indices are the SAEs' own latent indices
    p_value: np.ndarray  # per pair, against the pooled null of matched correlations
    q_value: np.ndarray  # BH across pairs
    fwer_threshold: float  # (1 - alpha) quantile of the null's largest matched correlation
    null_matched: np.ndarray  # (permutations, pairs) matched correlations of the null replicates
    fired_a: np.ndarray  # sampled voxels where each latent fired
    fired_b: np.ndarray
    voxels: int
    cases: list[tuple[str, str, int]]  # (case id, population, sampled voxels)
    settings: ArchDiffSettings
    grid: tuple[int, int, int] | None  # common grid of the last case
    block: tuple[int, int, int] | None  # its permutation block in voxels

    def significant(self) -> np.ndarray:
        return self.q_value < self.settings.alpha

    def summary(self) -> dict:
        sims = self.matching.similarity
        return {
            "cases": len(self.cases),
            "voxels": self.voxels,
            "alive_a": int((self.fired_a >= self.settings.min_active_rows).sum()),
            "alive_b": int((self.fired_b >= self.settings.min_active_rows).sum()),
            "pairs": int(sims.size),
            "significant_bh": int(self.significant().sum()),
            "above_fwer_threshold": int((sims > self.fwer_threshold).sum()),
            "fwer_threshold": self.fwer_threshold,
            "median_matched_correlation": float(np.median(sims)) if sims.size else float("nan"),
            "median_null_matched_correlation": float(np.median(self.null_matched))
            if self.null_matched.size
            else float("nan"),
            "permutations": self.settings.n_permutations,
            "block_mm": self.settings.block_mm,
            "block_voxels": list(self.block) if self.block else None,
            "alpha": self.settings.alpha,
            "grid": list(self.grid) if self.grid else None,
        }


@dataclass
class ArchitectureDiff:
    """Streaming study: `add_case` for every case, then `result()`."""

    n_a: int
    n_b: int
    settings: ArchDiffSettings = field(default_factory=ArchDiffSettings)

    def __post_init__(self) -> None:
        self.observed = CrossCorrelation(self.n_a, self.n_b)
        self._cached: list[_CachedCase] = []
        self.cases: list[tuple[str, str, int]] = []
        self.grid: tuple[int, int, int] | None = None
        self.block: tuple[int, int, int] | None = None

    def add_case(self, maps: CaseLatentMaps) -> None:
        if maps.codes_a.shape[1] != self.n_a or maps.codes_b.shape[1] != self.n_b:
            raise ParameterError(
                f"case {maps.case_id}: codes have {maps.codes_a.shape[1]} and {maps.codes_b.shape[1]} latents, "
                f"the study was set up for {self.n_a} and {self.n_b}"
            )
        common = finer_grid(maps.grid_a, maps.grid_b)
        grid = tuple(int(n) for n in common.shape)
        a = resample_codes(maps.codes_a, maps.grid_a, common)
        b = resample_codes(maps.codes_b, maps.grid_b, common)
        at = layer_voxels_in(common, maps.case_grid)
        strata = maps.strata[at[..., 0], at[..., 1], at[..., 2]]
        indices, _ = sample_by_stratum(
            strata, self.settings.quotas or DEFAULT_QUOTAS, [self.settings.seed, len(self.cases)]
        )
        rows_a = a[indices]
        self.observed.add(rows_a, b[indices])
        zero = sp.csr_matrix((1, self.n_b))
        block = block_voxels(common, self.settings.block_mm)
        self._cached.append(
            _CachedCase(rows_a, sp.vstack([b, zero], format="csr"), indices, grid, block, _brain_blocks(strata, block))
        )
        self.cases.append((maps.case_id, maps.population, int(indices.size)))
        self.grid, self.block = grid, block

    def _match(self, table: CrossCorrelation, index_a: np.ndarray, index_b: np.ndarray) -> Matching:
        corr = table.correlation(index_a, index_b)
        m = match_latents(DenseSimilarity(corr), self.settings.method, self.settings.neighbours)
        return Matching(index_a[m.a], index_b[m.b], m.similarity, self.n_a, self.n_b, m.method).sorted_by_a()

    def _null_replicate(self, replicate: int, index_a: np.ndarray, index_b: np.ndarray) -> np.ndarray:
        table = CrossCorrelation(self.n_a, self.n_b)
        for number, case in enumerate(self._cached):
            rng = np.random.default_rng([self.settings.seed, replicate + 1, number])
            source = block_permutation(case.indices, case.grid, case.block, case.brain_blocks, rng)
            table.add(case.rows_a, case.codes_b[source])
        return self._match(table, index_a, index_b).similarity

    def result(self, progress: Callable[[int, int], None] | None = None) -> ArchDiffResult:
        if not self.cases:
            raise ParameterError("no cases were added; architecture diffing needs at least one case")
        s = self.settings
        index_a = np.flatnonzero(self.observed.nonzero_a >= s.min_active_rows)
        index_b = np.flatnonzero(self.observed.nonzero_b >= s.min_active_rows)
        matching = self._match(self.observed, index_a, index_b)
        null = np.zeros((s.n_permutations, matching.similarity.size))
        for replicate in range(s.n_permutations):
            values = np.sort(self._null_replicate(replicate, index_a, index_b))[::-1]
            null[replicate, : values.size] = values
            if progress is not None:
                progress(replicate + 1, s.n_permutations)
        pooled = np.sort(null.ravel())
        above = pooled.size - np.searchsorted(pooled, matching.similarity, side="left")
        p_value = (1.0 + above) / (1.0 + pooled.size)
        largest = null.max(1) if null.shape[1] else np.zeros(s.n_permutations)
        fwer = float(np.quantile(largest, 1 - s.alpha)) if largest.size else math.nan
        return ArchDiffResult(
            matching,
            p_value,
            benjamini_hochberg(p_value),
            fwer,
            null,
            self.observed.nonzero_a.copy(),
            self.observed.nonzero_b.copy(),
            self.observed.n,
            list(self.cases),
            s,
            self.grid,
            self.block,
        )
