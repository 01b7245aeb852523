"""Architecture diffing: common-grid resampling, streaming correlations, block-permutation null."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.ndimage import gaussian_filter, zoom

from MedSegLensLib.data import Grid
from MedSegLensLib.diffing import (
    ArchDiffSettings,
    ArchitectureDiff,
    CaseLatentMaps,
    CrossCorrelation,
    block_permutation,
    trilinear_operator,
)
from MedSegLensLib.diffing.architectures import _brain_blocks
from MedSegLensLib.errors import ParameterError
from MedSegLensLib.sae.strata import STRATUM_CODE

N = 32  # case grid 32^3 at 2 mm; network A's layer at stride 2 (16^3), B's at stride 4 (8^3)
CASE_GRID = Grid((N,) * 3, np.diag([2.0, 2.0, 2.0, 1.0]))
GRID_A = Grid((16,) * 3, np.diag([4.0, 4.0, 4.0, 1.0]))
GRID_B = Grid((8,) * 3, np.diag([8.0, 8.0, 8.0, 1.0]))


def world(grid: Grid) -> np.ndarray:
    axes = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    points = np.stack([a.ravel() for a in axes] + [np.ones(axes[0].size)])
    return (grid.affine @ points)[:3].T


def test_trilinear_operator_reproduces_a_linear_field_in_world_coordinates():
    source = Grid((6, 7, 5), np.array([[3.0, 0, 0, 10], [0, 2.0, 0, -4], [0, 0, 4.0, 1], [0, 0, 0, 1]]))
    target = Grid((11, 9, 13), np.array([[1.5, 0, 0, 11], [0, 1.0, 0, -3], [0, 0, 1.2, 3], [0, 0, 0, 1]]))
    coeff = np.array([0.3, -1.2, 0.7])
    values = world(source) @ coeff
    op = trilinear_operator(source, target)
    assert np.allclose(np.asarray(op.sum(1)).ravel(), 1.0)
    assert op.getnnz(axis=1).max() <= 8
    expected = world(target) @ coeff
    # inside the source's field of view the interpolation of a linear field is exact
    pos = world(target)
    lo, hi = world(source).min(0), world(source).max(0)
    inside = np.all((pos >= lo) & (pos <= hi), axis=1)
    assert inside.sum() > 100
    assert np.allclose((op @ values)[inside], expected[inside])
    assert (trilinear_operator(source, source) != sp.identity(6 * 7 * 5)).nnz == 0


def test_streamed_cross_correlation_equals_numpy_on_dense_data():
    rng = np.random.default_rng(0)
    a = np.maximum(rng.normal(size=(500, 6)) - 0.8, 0)
    b = np.maximum(a[:, [2, 0, 5]] + rng.normal(0, 0.3, (500, 3)) - 0.2, 0)
    table = CrossCorrelation(6, 3)
    for start in range(0, 500, 128):  # in batches, as cases stream in
        table.add(sp.csr_matrix(a[start : start + 128]), sp.csr_matrix(b[start : start + 128]))
    expected = np.corrcoef(a.T, b.T)[:6, 6:]
    assert np.allclose(table.correlation(np.arange(6), np.arange(3)), expected)
    assert np.array_equal(table.nonzero_a, (a > 0).sum(0))


def test_block_permutation_moves_whole_blocks_within_their_class():
    grid = (10, 8, 6)
    block = 3
    strata = np.zeros(grid, np.uint8)
    strata[:6, :6, :] = STRATUM_CODE["WM"]
    brain = _brain_blocks(strata, block)
    counts = (4, 3, 2)
    indices = np.arange(int(np.prod(grid)))
    target = block_permutation(indices, grid, block, brain, np.random.default_rng(1))
    coords = np.stack(np.unravel_index(indices, grid), 1)
    inside = target < np.prod(grid)
    moved = np.stack(np.unravel_index(target[inside], grid), 1)
    assert np.array_equal(moved % block, coords[inside] % block)  # same offset inside the block
    source_block = np.ravel_multi_index((coords[inside] // block).T, counts)
    target_block = np.ravel_multi_index((moved // block).T, counts)
    for b in np.unique(source_block):
        assert len(set(target_block[source_block == b].tolist())) == 1  # a block moves as a whole
        assert brain[target_block[source_block == b][0]] == brain[b]  # brain blocks stay brain blocks
    assert len(set(target_block.tolist())) == len(set(source_block.tolist()))  # one-to-one


def smooth_case(rng, n_a: int, n_b: int, planted: bool):
    """Sparse blobby latent maps (thresholded smooth noise); A0 and B0 share a field when `planted`."""

    def field():
        f = gaussian_filter(rng.normal(size=(N,) * 3), 3)
        return f / f.std()

    def sparse(f, factor):
        return np.maximum(zoom(f, factor, order=1) - 0.8, 0).ravel()

    base = field()
    a = [sparse(base if (j == 0 and planted) else field(), 0.5) for j in range(n_a)]
    b = [sparse(base + 0.5 * field() if (j == 0 and planted) else field(), 0.25) for j in range(n_b)]
    return sp.csr_matrix(np.stack(a, 1)), sp.csr_matrix(np.stack(b, 1))


def brain_strata() -> np.ndarray:
    zz = np.stack(np.meshgrid(*[np.arange(N)] * 3, indexing="ij"), -1)
    return np.where(((zz - 15.5) ** 2).sum(-1) < 13**2, STRATUM_CODE["WM"], STRATUM_CODE["background"])


def run_study(block_mm: float, seed: int = 1, cases: int = 6) -> object:
    rng = np.random.default_rng(seed)
    strata = brain_strata()
    study = ArchitectureDiff(
        12, 12, ArchDiffSettings(n_permutations=40, block_mm=block_mm, quotas={"background": 100, "WM": 2000})
    )
    for c in range(cases):
        codes_a, codes_b = smooth_case(rng, 12, 12, planted=True)
        study.add_case(
            CaseLatentMaps(f"c{c}", "adult", codes_a, GRID_A, codes_b, GRID_B, CASE_GRID, strata.astype(np.uint8))
        )
    return study.result()


def test_block_null_accepts_the_planted_pair_and_rejects_random_pairs():
    result = run_study(block_mm=16)  # 4 voxels of the 4 mm common grid
    m = result.matching
    planted = np.flatnonzero((m.a == 0) & (m.b == 0))
    assert planted.size == 1
    assert result.q_value[planted[0]] < 0.05 and m.similarity[planted[0]] > result.fwer_threshold
    random_pairs = np.flatnonzero(m.a != 0)
    assert np.all(m.similarity[random_pairs] <= result.fwer_threshold)
    assert result.significant()[random_pairs].sum() <= 1
    # common grid = A's 16^3 layer grid (voxel j at case voxel 2j): all its brain voxels (< quota) + 100 background
    assert result.grid == (16, 16, 16) and result.block == (4, 4, 4)
    assert result.summary()["voxels"] == 6 * (100 + int((brain_strata()[::2, ::2, ::2] == STRATUM_CODE["WM"]).sum()))


def test_voxelwise_shuffle_would_call_smooth_random_maps_significant():
    """Why blocks: a voxel shuffle ignores spatial autocorrelation and finds 'matches' among unrelated blobs."""
    voxelwise, blocks = run_study(block_mm=4), run_study(block_mm=16)
    random_v = voxelwise.matching.a != 0
    random_b = blocks.matching.a != 0
    assert voxelwise.significant()[random_v].sum() >= 3
    assert voxelwise.significant()[random_v].sum() > blocks.significant()[random_b].sum()
    assert voxelwise.fwer_threshold < blocks.fwer_threshold


def test_study_refuses_codes_of_another_width_and_empty_results():
    study = ArchitectureDiff(12, 12, ArchDiffSettings(n_permutations=2))
    with pytest.raises(ParameterError, match="no cases"):
        study.result()
    codes_a, codes_b = smooth_case(np.random.default_rng(0), 5, 12, planted=False)
    strata = np.zeros((N,) * 3, np.uint8)
    with pytest.raises(ParameterError, match="5 and 12 latents"):
        study.add_case(CaseLatentMaps("c", "adult", codes_a, GRID_A, codes_b, GRID_B, CASE_GRID, strata))
