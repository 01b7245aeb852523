"""Latent matching: optimal assignment by decoder cosine, pruned vs dense, chance level, orphans."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from MedSegLensLib.diffing import CosineSimilarity, DenseSimilarity, compare_dictionaries, match_dense, match_pruned
from MedSegLensLib.errors import CompatibilityError
from MedSegLensLib.sae import SAEConfig, SparseAutoencoder


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def sae_with_decoder(w_dec: np.ndarray) -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(w_dec.shape[1], w_dec.shape[0], 2, "topk"))
    with torch.no_grad():
        sae.W_dec.copy_(torch.as_tensor(unit(w_dec), dtype=torch.float32))
        sae.W_enc.copy_(sae.W_dec)
    return sae


def permuted_pair(n: int, d: int, noise: float, seed: int, shared: int | None = None):
    """Dictionary A, and B = A permuted (+ noise); the last n - shared rows of B are new random directions."""
    rng = np.random.default_rng(seed)
    a = unit(rng.normal(size=(n, d)))
    perm = rng.permutation(n)
    b = unit(a[perm] + noise * rng.normal(size=(n, d)) / np.sqrt(d))
    if shared is not None:
        b[perm >= shared] = unit(rng.normal(size=(int((perm >= shared).sum()), d)))
    return a, b, perm


@pytest.mark.parametrize("method", ["dense", "pruned"])
def test_permuted_dictionaries_with_noise_match_perfectly(method):
    a, b, perm = permuted_pair(512, 32, noise=0.1, seed=0)
    comparison = compare_dictionaries(sae_with_decoder(a), sae_with_decoder(b), threshold=0.9, method=method)
    m = comparison.matching
    assert np.array_equal(m.partner_of_b(), perm)  # B's latent i is A's latent perm[i]
    assert m.similarity.min() > 0.98
    s = comparison.summary()
    assert s["matched_above_threshold"] == 512 and s["orphans_a"] == s["orphans_b"] == 0
    assert s["fraction_of_a_matched"] == 1.0
    # In 32 dimensions a random rotation of B leaves nothing above 0.9.
    assert s["chance_fraction_above_threshold"] < 0.02


def test_partly_shared_dictionaries_leave_the_new_latents_as_orphans():
    a, b, perm = permuted_pair(300, 48, noise=0.1, seed=1, shared=200)
    comparison = compare_dictionaries(sae_with_decoder(a), sae_with_decoder(b), threshold=0.7)
    new_b = np.flatnonzero(perm >= 200)
    assert set(comparison.orphans_b().tolist()) == set(new_b.tolist())
    assert set(comparison.orphans_a().tolist()) == set(range(200, 300))
    partner = comparison.matching.partner_of_b()
    shared_b = np.flatnonzero(perm < 200)
    assert np.array_equal(partner[shared_b], perm[shared_b])


def test_dead_latents_are_left_out_of_the_matching():
    a, b, perm = permuted_pair(64, 16, noise=0.05, seed=2)
    alive_a = np.ones(64, bool)
    alive_a[:10] = False
    comparison = compare_dictionaries(sae_with_decoder(a), sae_with_decoder(b), alive_a=alive_a)
    assert not set(comparison.matching.a.tolist()) & set(range(10))
    s = comparison.summary()
    assert s["alive_a"] == 54 and s["matched_above_threshold"] == 54 and s["orphans_a"] == 0
    assert s["orphans_b"] == 10  # B's partners of the dead A latents


@pytest.mark.parametrize("seed", range(4))
def test_pruned_assignment_equals_dense_on_structured_dictionaries(seed):
    """70 % shared (noisy) directions plus new ones: the same matched pairs with the default 8 neighbours or more.

    Only the leftover, unmatchable latents (all far below the threshold) may pair differently,
    which moves the summed similarity by well under 1 %.
    """
    a, b, _ = permuted_pair(400, 24, noise=0.4, seed=10 + seed, shared=280)
    source = CosineSimilarity(a, b)
    dense = match_dense(source)
    for neighbours in (8, 16):
        pruned = match_pruned(source, neighbours=neighbours, block_rows=96)
        above_dense = {(x, y) for x, y, s in zip(dense.a, dense.b, dense.similarity) if s >= 0.7}
        above_pruned = {(x, y) for x, y, s in zip(pruned.a, pruned.b, pruned.similarity) if s >= 0.7}
        assert above_pruned == above_dense and len(above_dense) >= 270
        assert pruned.total() == pytest.approx(dense.total(), rel=5e-3)
        assert pruned.total() <= dense.total() + 1e-9


@pytest.mark.parametrize("shape", [(40, 40), (30, 45), (45, 30)])
def test_pruned_with_every_pair_as_candidate_is_the_exact_optimum(shape):
    rng = np.random.default_rng(sum(shape))
    matrix = rng.normal(size=shape)
    dense, pruned = match_dense(DenseSimilarity(matrix)), match_pruned(DenseSimilarity(matrix), neighbours=max(shape))
    assert pruned.total() == pytest.approx(dense.total(), rel=1e-12)
    assert len(pruned.a) == len(dense.a) == min(shape)
    assert len(set(pruned.a.tolist())) == len(set(pruned.b.tolist())) == min(shape)  # one-to-one


def test_pruned_assignment_is_one_to_one_and_complete_when_candidates_collide():
    """Every latent prefers the same few partners: leftovers are completed by the dense step."""
    rng = np.random.default_rng(5)
    hub = unit(rng.normal(size=(3, 16)))
    a = unit(hub[rng.integers(0, 3, 120)] + 0.05 * rng.normal(size=(120, 16)))
    b = unit(rng.normal(size=(120, 16)))
    b[:3] = hub
    pruned = match_pruned(CosineSimilarity(a, b), neighbours=2)
    assert sorted(pruned.a.tolist()) == list(range(120)) and sorted(pruned.b.tolist()) == list(range(120))
    assert pruned.total() <= match_dense(CosineSimilarity(a, b)).total() + 1e-9


def test_saes_of_different_widths_are_refused():
    with pytest.raises(CompatibilityError, match="diff archs"):
        compare_dictionaries(sae_with_decoder(np.eye(8)), sae_with_decoder(np.eye(16)))
