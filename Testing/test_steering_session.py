"""The steering session: cached re-execution equals the steered network, neutral steering is the network itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_support import tiny_case_arrays, write_case, write_nifti
from steering_support import long_case, reference_logits, tiny_steering_setups

from MedSegLensLib.data import read_case
from MedSegLensLib.models import inference
from MedSegLensLib.steering import RegionSpec, SteeringSession, SteeringSpec, open_session
from MedSegLensLib.steering import session as session_module

pytestmark = pytest.mark.one_thread  # tiny networks: one torch thread (conftest.py)


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
    preview = session.steer(spec, exact=False)  # on the padded grid, its labels cut back to the case
    assert preview.preview and preview.logits.shape == session.logits.shape
    assert np.array_equal(preview.prediction.labels, model.to_prediction(preview.logits, session.prepared).labels)


@pytest.mark.parametrize("arch", ["unet", "segformer"])
def test_on_a_case_the_model_resamples_labels_are_recomputed_only_where_the_change_reaches(
    setups, workdir, arch, monkeypatch
):
    """A 1 mm case for a 2 mm model: each update's labels equal `to_prediction` of its logits on the whole case
    grid, while only the case voxels the changed logits reach are resampled (`SegmentationModel.labels_within`)."""
    model, sae_dir, _ = setups[arch]
    images, labels = tiny_case_arrays(np.random.default_rng(11), shape=(96, 32, 32))
    case = read_case(write_case(workdir / f"fine-{arch}", "fine", images, labels, np.eye(4)))
    mask = np.zeros(case.grid.shape, np.uint8)
    mask[40:56, 10:22, 10:22] = 1
    region = RegionSpec("mask", path=str(write_nifti(workdir / f"fine-{arch}-mask.nii.gz", mask, np.eye(4))))
    session = open_session(model, sae_dir, case)
    assert session.prepared.resampled
    unsteered = session.unsteered().labels
    resampled_shapes = []
    original = inference.resample_to_grid
    monkeypatch.setattr(
        inference,
        "resample_to_grid",
        lambda v, s, t, order: resampled_shapes.append(t.shape) or original(v, s, t, order),
    )
    latent = int(session.scales.frequency.argmax())
    for exact in (True, False):
        resampled_shapes.clear()
        result = session.steer(SteeringSpec((latent,), (3.0,), "additive", region), exact=exact)
        assert resampled_shapes and all(t[0] < case.grid.shape[0] for t in resampled_shapes)  # not the far ends
        whole = model.to_prediction(result.logits, session.prepared).labels
        assert (whole != unsteered).any()
        assert np.array_equal(result.prediction.labels, whole)


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


def test_the_preview_is_the_pooled_statistics_rest_run_once_over_the_whole_case(setups, workdir):
    """The documented approximation: the unsteered logits plus rest(E + D) - rest(E), where E and D are the windows'
    entry outputs and their changes blended as MONAI blends logits, and the rest's instance norms use the windows'
    statistics pooled. The session computes it only over the box the change reaches; here it is run over the whole
    case, independently (MONAI's own blending, whole-window pushes)."""
    model, sae_dir, _ = setups["unet"]
    case, mask = long_case(workdir, "long2", 48, 5, (slice(10, 14), slice(9, 13), slice(9, 13)))
    spec = SteeringSpec((2,), (3.0,), "additive", RegionSpec("mask", path=str(mask)))
    session = open_session(model, sae_dir, case)
    runner = session._runner
    assert runner.frozen is not None and runner.frozen.radius == (1, 1, 1)  # one 3x3x3 convolution after the norm
    assert session.previews and session.pads == [(0, 0)] * 3
    fast, exact = session.steer(spec, exact=False), session.steer(spec)
    assert fast.windows_recomputed == exact.windows_recomputed < fast.windows_total
    assert fast.preview and not exact.preview
    gates = session.gates(spec.region)
    typical = session.scales.of(spec.latents)
    directions = session.sae.W_dec[[2]]
    pushed = [
        runner.push((3.0 * typical).view(1, -1, 1, 1, 1) * gate, directions) if gate.any() else 0.0 * batch.cache[0]
        for batch, gate in zip(session.batches, gates)
    ]
    entry = _blended(session, [batch.cache[0] for batch in session.batches])
    change = _blended(session, pushed)
    assert change.abs().amax() > 0
    means = [torch.cat([batch.stats[k][0] for batch in session.batches]) for k in range(len(runner.frozen.norms))]
    variances = [torch.cat([batch.stats[k][1] for batch in session.batches]) for k in range(len(means))]
    pooled = [
        (m.mean(0, keepdim=True), (v + m**2).mean(0, keepdim=True) - m.mean(0, keepdim=True) ** 2)
        for m, v in zip(means, variances)
    ]
    with torch.no_grad():
        expected = session.logits + runner.frozen.run(entry + change, (), pooled) - runner.frozen.run(entry, (), pooled)
    assert torch.allclose(fast.logits, expected, atol=1e-5)
    assert fast.logits.shape == exact.logits.shape and not torch.equal(fast.logits, session.logits)
    assert np.array_equal(fast.prediction.labels, session.model.to_prediction(fast.logits, session.prepared).labels)
    changed = fast.prediction.labels != exact.prediction.labels
    assert changed.sum() <= (exact.prediction.labels != session.unsteered().labels).sum()
    # no change: the unsteered logits exactly
    neutral = session.steer(SteeringSpec((2,), (0.0,), "additive", spec.region), exact=False)
    assert torch.equal(neutral.logits, session.logits) and not neutral.preview


def _blended(session: SteeringSession, per_batch: list[torch.Tensor]) -> torch.Tensor:
    """Per-window values (full resolution), one tensor per window batch, blended over the case by MONAI."""
    from MedSegLensLib.steering.windows import run_windows

    batches = iter(per_batch)
    return run_windows(session.prepared.tensor, session.model.config, lambda _windows, _coords: next(batches).clone())


@pytest.mark.parametrize("kind", ["transposed", "same", "strided"])
def test_the_entry_response_on_the_changes_box_equals_the_whole_windows(kind):
    from MedSegLensLib.models.split import LinearEntry
    from MedSegLensLib.steering.runners import EntryRunner

    torch.manual_seed(0)
    conv = {
        "transposed": torch.nn.ConvTranspose3d(7, 5, 3, stride=2, padding=1, output_padding=1),
        "same": torch.nn.Conv3d(7, 5, 3, padding=2, dilation=2),
        "strided": torch.nn.Conv3d(7, 5, 3, stride=2, padding=1),
    }[kind]
    runner = EntryRunner.__new__(EntryRunner)  # only the entry convolution matters here
    runner.entry = LinearEntry(None, None, conv, 2, 3)
    coefficients = torch.zeros(1, 2, 12, 10, 11)
    coefficients[:, :, 0:3, 4:7, 8:11] = torch.randn(1, 2, 3, 3, 3)  # touching the window's edges
    directions = torch.randn(2, 3)
    with torch.no_grad():
        whole = runner.push(coefficients, directions)
        where, box = runner.push_box(coefficients, directions)
    assert torch.allclose(whole[(slice(None), slice(None), *where)], box, atol=1e-6)
    outside = whole.clone()
    outside[(slice(None), slice(None), *where)] = 0
    assert outside.abs().max() == 0  # nothing the box leaves out
    if kind != "strided":
        assert box[0, 0].numel() < whole[0, 0].numel()
