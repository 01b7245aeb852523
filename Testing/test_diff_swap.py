"""Feature swapping: latents that the other SAE shares survive decoding with its dictionary, the others do not."""

from __future__ import annotations

import numpy as np
import pytest
from diff_cases import axis_sae, directions_sae, write_planted_store

from MedSegLensLib.diffing import compare_dictionaries, swap_features
from MedSegLensLib.errors import CompatibilityError

D = 64
SHARED = 40  # B holds A's first 40 directions (in another order); its other 24 latents point elsewhere:
# a random basis of the subspace of A's last 24 directions, so they do not leak into the shared ones.


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    rng = np.random.default_rng(0)
    sae_a = axis_sae(D)
    order = rng.permutation(D)
    directions = np.eye(D)[order]
    new = order >= SHARED
    basis, _ = np.linalg.qr(rng.normal(size=(D - SHARED, D - SHARED)))
    directions[new] = 0.0
    directions[np.ix_(new, np.arange(SHARED, D))] = basis
    sae_b = directions_sae(directions)
    # Every latent fires in 20 % of rows, more in some cases than others (so within-case r is defined).
    rates = {j: (lambda pop, s, case_rng: 0.2 * case_rng.uniform(0.5, 1.5)) for j in range(D)}
    store = write_planted_store(
        tmp_path_factory.mktemp("swap") / "store", D, {"adult": 6}, lambda p, s: 120, rates, seed=2
    )
    comparison = compare_dictionaries(sae_a, sae_b, threshold=0.7)
    batches = ((x, meta["case_index"].numpy()) for x, meta in store.scan_with_metadata(500))
    swap = swap_features(sae_a, sae_b, comparison.matching, batches, len(store.cases))
    return comparison, swap


def test_shared_latents_survive_the_swap_and_new_ones_do_not(setup):
    comparison, swap = setup
    shared = np.arange(SHARED)
    assert set(comparison.orphans_a().tolist()) == set(range(SHARED, D))
    assert np.all(swap.correlation[shared] > 0.999)
    assert np.all(swap.spatial_correlation[shared] > 0.999)
    assert np.allclose(swap.kept[shared], 1.0, atol=1e-3)
    # An orphan goes to B's most similar latent (cosine < 0.7): part of it comes back, most does not.
    lost = np.nan_to_num(swap.correlation[SHARED:], nan=0.0)
    assert np.median(lost) < 0.5 and np.all(lost < 0.8)
    assert swap.survives(0.5)[shared].all() and swap.survives(0.5)[SHARED:].mean() <= 0.3


def test_reconstruction_error_rises_only_by_what_the_new_latents_carried(setup):
    _, swap = setup
    assert swap.fvu_own < 0.02
    # 24 of 64 equally used latents are decoded in other directions of their subspace.
    assert 0.3 < swap.fvu_swap < 1.2
    assert swap.rows == 6 * 6 * 120


def test_swapping_between_layers_of_different_width_is_refused(setup):
    comparison, _ = setup
    with pytest.raises(CompatibilityError, match="one layer"):
        swap_features(axis_sae(D), axis_sae(8), comparison.matching, iter([]), 1)
