"""The steering session: cached re-execution equals the steered network, neutral steering is the network itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_support import (  # noqa: F401 (fixtures)
    one_thread,
    tiny_case_arrays,
    tiny_training_cohort,
    trained_tiny_model,
    write_case,
    write_nifti,
)
from steering_support import long_case, reference_logits, tiny_steering_setups

from MedSegLensLib.data import read_case
from MedSegLensLib.steering import RegionSpec, SteeringSession, SteeringSpec, open_session
from MedSegLensLib.steering import session as session_module


@pytest.fixture(scope="module")
def setups(workdir):
    """Per architecture: model, SAE folder (with typical activations), and the cohort's case folders."""
    return tiny_steering_setups(workdir, "sae")


@pytest.mark.parametrize("arch", ["unet", "segformer"])
def test_the_unsteered_session_is_model_predict_bit_for_bit(setups, arch):
    model, sae_dir, cases = setups[arch]
    case = read_case(cases[0])
    session = open_session(model, sae_dir, case)
    assert torch.equal(session.logits, model.logits(model.prepare(case)))
    assert np.array_equal(session.unsteered().labels, model.predict(case).labels)
    assert session.uses_entry_shortcut == (arch == "unet")


@pytest.mark.parametrize("arch", ["unet", "segformer"])
def test_neutral_steering_reproduces_the_network_exactly(setups, arch):
    model, sae_dir, cases = setups[arch]
    session = open_session(model, sae_dir, read_case(cases[1]))
    for spec in (
        SteeringSpec((1, 5), (1.0, 1.0), "multiplicative"),
        SteeringSpec((1, 5), (1.0, 1.0), "multiplicative", RegionSpec("tumour-margin", 4)),
        SteeringSpec((3,), (0.0,), "additive"),
    ):
        result = session.steer(spec)
        assert torch.equal(result.logits, session.logits), spec
        assert np.array_equal(result.prediction.labels, session.unsteered().labels)
    # a real change first, then back to beta = 1: the cache was not disturbed
    assert not torch.equal(session.steer(SteeringSpec((1, 5), (3.0, 0.0), "multiplicative")).logits, session.logits)
    assert torch.equal(session.steer(SteeringSpec((1, 5), (1.0, 1.0), "multiplicative")).logits, session.logits)


@pytest.mark.parametrize("arch", ["unet", "segformer"])
def test_cached_steering_equals_the_steered_network_run_in_full(setups, arch):
    model, sae_dir, cases = setups[arch]
    session = open_session(model, sae_dir, read_case(cases[2]))
    latents = tuple(int(i) for i in torch.argsort(session.scales.frequency, descending=True)[:2])
    margin = RegionSpec("tumour-margin", 4)
    specs = [
        SteeringSpec(latents, (2.0, -1.0), "additive"),
        SteeringSpec(latents, (3.0, 0.5), "additive", margin),
        SteeringSpec(latents, (2.5, 0.0), "multiplicative"),
        SteeringSpec(latents, (4.0, 0.0), "multiplicative", margin),
        SteeringSpec(latents, (2.0, 0.0), "clamp", margin),
    ]
    for spec in specs:
        result = session.steer(spec)
        reference = reference_logits(session, spec)
        assert not torch.allclose(reference, session.logits, atol=1e-3), f"{spec} does not change the network"
        assert torch.allclose(result.logits, reference, atol=2e-5, rtol=1e-5), spec
    slow = SteeringSession(model, session.sae, session.case, session.layer, scales=session.scales, fast=False)
    for spec in specs[:3]:
        assert torch.allclose(slow.steer(spec).logits, session.steer(spec).logits, atol=2e-5, rtol=1e-5)


def test_a_region_leaves_windows_it_cannot_reach_untouched(setups, workdir):
    model, sae_dir, _ = setups["unet"]
    case, mask = long_case(workdir, "long", 48, 5, (slice(2, 8), slice(8, 16), slice(8, 16)))
    session = open_session(model, sae_dir, case)
    spec = SteeringSpec(
        (int(session.scales.frequency.argmax()),), (3.0,), "additive", RegionSpec("mask", path=str(mask))
    )
    result = session.steer(spec)
    assert 0 < result.windows_recomputed < result.windows_total
    assert torch.allclose(result.logits, reference_logits(session, spec), atol=2e-5, rtol=1e-5)
    changed = np.nonzero((result.prediction.labels != session.unsteered().labels).any(axis=(1, 2)))[0]
    assert changed.max() < 8 + 16  # nothing changes beyond the last window that contains the box


def test_an_image_smaller_than_a_window_is_padded_as_inference_pads_it(setups, workdir):
    model, sae_dir, _ = setups["unet"]
    rng = np.random.default_rng(9)
    images, labels = tiny_case_arrays(rng, shape=(12, 20, 14))
    case = read_case(write_case(workdir / "small", "small", images, labels, np.diag([2.0, 2.0, 2.0, 1.0])))
    session = open_session(model, sae_dir, case)
    assert any(a or b for a, b in session.pads)
    assert torch.equal(session.logits, model.logits(model.prepare(case)))
    spec = SteeringSpec((2, 7), (2.0, 1.0), "additive", RegionSpec("tumour-margin", 2))
    assert torch.allclose(session.steer(spec).logits, reference_logits(session, spec), atol=2e-5, rtol=1e-5)


def test_a_strength_change_does_not_re_encode_but_a_new_latent_set_does(setups, monkeypatch):
    model, sae_dir, cases = setups["unet"]
    session = open_session(model, sae_dir, read_case(cases[0]))
    calls = []
    original = session_module.latent_codes
    monkeypatch.setattr(session_module, "latent_codes", lambda *a: calls.append(1) or original(*a))
    session.steer(SteeringSpec((1, 2), (2.0, 0.5), "multiplicative"))
    first = len(calls)
    assert first == len(session.batches)
    for beta in (0.0, 1.5, 3.0):
        session.steer(SteeringSpec((1, 2), (beta, 0.5), "multiplicative"))
    session.steer(SteeringSpec((1, 2), (0.5, 0.5), "clamp"))
    assert len(calls) == first
    session.steer(SteeringSpec((1, 3), (2.0, 0.5), "multiplicative"))
    assert len(calls) == 2 * first


def test_region_limited_recomputation_equals_the_frozen_statistics_network_on_whole_windows(setups, workdir):
    """The documented tolerance: cropping around the change reproduces, to float rounding, the network whose
    instance norms use the unsteered statistics run on whole windows; windows the region cannot reach stay exact."""
    model, sae_dir, _ = setups["unet"]
    case, mask = long_case(workdir, "long2", 48, 5, (slice(10, 14), slice(9, 13), slice(9, 13)))
    spec = SteeringSpec((2,), (3.0,), "additive", RegionSpec("mask", path=str(mask)))
    session = open_session(model, sae_dir, case)
    runner = session._runner
    assert runner.frozen is not None and runner.frozen.radius == (1, 1, 1)  # one 3x3x3 convolution after the norm
    fast, exact = session.steer(spec, exact=False), session.steer(spec)
    assert fast.windows_recomputed == exact.windows_recomputed < fast.windows_total
    assert fast.preview and not exact.preview
    gates = session.gates(spec.region)
    typical = session.scales.of(spec.latents)
    directions = session.sae.W_dec[[2]]
    for index, (batch, gate) in enumerate(zip(session.batches, gates)):
        if not bool(gate.any()):
            continue
        c = (3.0 * typical).view(1, -1, 1, 1, 1) * gate
        windows = torch.arange(c.shape[0])
        update = runner.steered_locally(batch.h, batch.cache, c, directions, batch.logits, windows, True)
        assert update.preview
        local = update.logits
        entry_out, rest_boundary, stats = batch.cache
        for w in range(c.shape[0]):
            for norm, (mean, var) in zip(runner.frozen.norms, stats):
                norm.stats = (mean[w : w + 1], var[w : w + 1])
            whole = runner.frozen.frozen(entry_out[w : w + 1] + runner.push(c[w : w + 1], directions), *rest_boundary)
            assert torch.allclose(local[w], whole[0], atol=1e-5), (index, w)
    changed = fast.prediction.labels != exact.prediction.labels
    assert changed.sum() <= (exact.prediction.labels != session.unsteered().labels).sum()
