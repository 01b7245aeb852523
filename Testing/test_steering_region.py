"""Region-limited recomputation (issue 19, item 1): only the crop a change can reach is re-run, exactly where the
suffix is local, as a labelled preview where instance norm makes a local update approximate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_support import trained_tiny_model
from steering_support import long_case, reference_logits, tiny_steering_setups

from MedSegLensLib.data import read_case
from MedSegLensLib.steering import RegionSpec, SteeringSession, SteeringSpec, open_session
from MedSegLensLib.steering.reach import has_global_operation, measure_reach

pytestmark = pytest.mark.one_thread  # tiny networks: one torch thread (conftest.py)


@pytest.fixture(scope="module")
def setups(workdir):
    return tiny_steering_setups(workdir, "sae-region")


def _labels(session: SteeringSession, logits: torch.Tensor) -> np.ndarray:
    return session.model.to_prediction(logits, session.prepared).labels


class SuffixCalls:
    """Counts the suffix's calls and the layer voxels each one was handed."""

    def __init__(self, function):
        self.function, self.calls = function, []

    def __call__(self, h, *boundary):
        self.calls.append(tuple(h.shape))
        return self.function(h, *boundary)


def test_the_segformer_decoder_suffix_is_local_and_its_reach_is_measured(setups):
    model, sae_dir, cases = setups["segformer"]
    session = open_session(model, sae_dir, read_case(cases[0]))
    reach = session._runner.reach
    assert reach is not None and not session.uses_entry_shortcut
    # head (per-voxel Linear) + trilinear upsampling to the input: one layer voxel of reach, plus one of safety
    assert reach.scale == session.stride and reach.radius == (2, 2, 2)
    # a suffix with instance norm is refused outright (the SegFormer's encoder stage 4 feeds the decoder's norm)
    deep = SteeringSession(model, None, read_case(cases[0]), "stages.3")
    assert deep._runner.reach is None and has_global_operation(deep._split.suffix)
    # and the impulse sees it: instance norm spreads a one-voxel change over the whole window
    h, *boundary = deep._split.prefix(deep.prepared.tensor[..., :32, :32, :32])
    assert measure_reach(_without_norm_check(deep._split.suffix), h, tuple(boundary)) is None


def _without_norm_check(suffix):
    """The same graph, hidden from the explicit check (a plain callable is not an fx graph to scan)."""
    from MedSegLensLib.steering import reach as reach_module

    class Opaque(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = suffix
            self.graph = torch.fx.Graph()  # empty: nothing for has_global_operation to find

        def forward(self, *args):
            return self.inner(*args)

    assert reach_module.has_global_operation(Opaque()) is False
    return Opaque()


@pytest.mark.parametrize("mode", ["additive-box", "additive-margin", "multiplicative-everywhere", "clamp-box"])
def test_the_exact_region_limited_update_equals_a_full_re_run_voxel_for_voxel(setups, workdir, mode):
    model, sae_dir, _ = setups["segformer"]
    case, mask = long_case(workdir, f"exact-{mode}", 64, 11, (slice(20, 26), slice(8, 14), slice(9, 15)))
    session = open_session(model, sae_dir, case)
    whole = SteeringSession(model, session.sae, case, session.layer, scales=session.scales, fast=False)
    assert session._runner.reach is not None and whole._runner.reach is None
    latent = int(session.scales.frequency.argmax())
    box, margin = RegionSpec("mask", path=str(mask)), RegionSpec("tumour-margin", 2)
    spec = {
        "additive-box": SteeringSpec((latent,), (3.0,), "additive", box),
        "additive-margin": SteeringSpec((latent, 1), (2.0, -1.0), "additive", margin),
        "multiplicative-everywhere": SteeringSpec((latent,), (4.0,), "multiplicative"),
        "clamp-box": SteeringSpec((latent,), (2.0,), "clamp", box),
    }[mode]
    result, full = session.steer(spec), whole.steer(spec)
    reference = reference_logits(session, spec)  # the steered network run plainly, window by window
    assert not torch.allclose(reference, session.logits, atol=1e-3), "the spec does not change the network"
    assert not result.preview and not full.preview
    assert torch.allclose(result.logits, reference, atol=2e-5, rtol=1e-5)
    assert torch.allclose(result.logits, full.logits, atol=2e-5, rtol=1e-5)
    assert np.array_equal(result.prediction.labels, full.prediction.labels)
    assert np.array_equal(result.prediction.labels, _labels(session, reference))
    assert result.windows_recomputed == full.windows_recomputed
    if mode.endswith("box"):
        assert 0 < result.windows_cropped <= result.windows_recomputed  # windows whose crop is smaller than them
    assert full.windows_cropped == 0


def test_a_steer_in_one_corner_re_runs_only_the_windows_and_crops_it_reaches(setups, workdir):
    model, sae_dir, _ = setups["segformer"]
    case, mask = long_case(workdir, "corner", 64, 11, (slice(1, 5), slice(1, 5), slice(1, 5)))
    session = open_session(model, sae_dir, case)
    layer_window = tuple(session.batches[0].h.shape[2:])
    spec = SteeringSpec(
        (int(session.scales.frequency.argmax()),), (3.0,), "additive", RegionSpec("mask", path=str(mask))
    )
    counter = SuffixCalls(session._split.suffix)
    session._split.suffix = counter
    result = session.steer(spec)
    near = 5 + 2 * max(session.stride)
    far = [w for batch in session.batches for w in batch.slices if any(s.start >= near for s in w)]
    assert far, "the case has windows far from the corner"
    assert 0 < result.windows_recomputed <= result.windows_total - len(far)
    assert len(counter.calls) == result.windows_recomputed  # one suffix call per reached window, none elsewhere
    for shape in counter.calls:  # each call gets a crop, not a window
        assert shape[0] == 1 and all(s < n for s, n in zip(shape[2:], layer_window))
    changed = np.nonzero(result.prediction.labels != session.unsteered().labels)
    assert all(len(axis) == 0 or axis.max() < 5 + 4 * max(session.stride) for axis in changed)


def test_a_unet_corner_steer_re_runs_only_near_windows_and_its_preview_is_labelled(setups, workdir):
    model, sae_dir, _ = setups["unet"]
    case, mask = long_case(workdir, "unet-corner", 64, 11, (slice(1, 5), slice(1, 5), slice(1, 5)))
    session = open_session(model, sae_dir, case)
    assert session.uses_entry_shortcut and session._runner.frozen.norm_names  # instance norm after the hook
    spec = SteeringSpec(
        (int(session.scales.frequency.argmax()),), (3.0,), "additive", RegionSpec("mask", path=str(mask))
    )
    rest_calls = SuffixCalls(session._runner.entry.rest)
    session._runner.entry.rest = rest_calls
    exact = session.steer(spec)
    near = 5 + max(session.stride)
    reaches = [w for batch in session.batches for w in batch.slices if all(s.start < near for s in w)]
    assert exact.windows_recomputed == len(reaches) < exact.windows_total
    assert sum(shape[0] for shape in rest_calls.calls) == exact.windows_recomputed  # whole windows, only those
    assert not exact.preview and exact.windows_cropped == 0
    assert torch.allclose(exact.logits, reference_logits(session, spec), atol=2e-5, rtol=1e-5)
    preview = session.steer(spec, exact=False)
    assert preview.preview and preview.windows_cropped == preview.windows_recomputed == exact.windows_recomputed
    assert np.array_equal(preview.prediction.labels, _labels(session, preview.logits))  # labels of the changed box
    differ = int((preview.prediction.labels != exact.prediction.labels).sum())
    steered = int((exact.prediction.labels != session.unsteered().labels).sum())
    assert differ <= steered  # the preview's deviation is measured against the exact result (bench reports it)
    # without a region there is nothing to crop: a request for a preview gets the exact update, labelled so
    everywhere = SteeringSpec(spec.latents, spec.strengths, "additive")
    assert not session.steer(everywhere, exact=False).preview


def test_the_worker_steer_job_passes_the_preview_flag_on(setups, workdir, tmp_path):
    import json

    from MedSegLensLib.worker.registry import JobContext, WorkerCache
    from MedSegLensLib.worker.steer_job import steer

    model, sae_dir, _ = setups["unet"]
    case, mask = long_case(workdir, "worker-corner", 64, 11, (slice(1, 5), slice(1, 5), slice(1, 5)))
    ctx = JobContext("r1", lambda _message: None, WorkerCache(), tmp_path)
    latent = int(open_session(model, sae_dir, case).scales.frequency.argmax())
    spec = SteeringSpec((latent,), (3.0,), "additive", RegionSpec("mask", path=str(mask))).to_json()
    folder = next((workdir / "worker-corner").rglob("*-t1n.nii.gz")).parent
    base = {"model": str(trained_tiny_model("unet", workdir)), "sae": str(sae_dir), "case": str(folder)}
    preview = steer({**base, "spec": spec, "exact": False}, ctx)
    exact = steer({**base, "spec": spec}, ctx)
    assert preview["preview"] is True and exact["preview"] is False
    assert json.loads(preview["provenance"])["extra"]["exact"] is False
    assert json.loads(exact["provenance"])["extra"]["exact"] is True
