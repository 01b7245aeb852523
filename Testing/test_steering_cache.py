"""The session's per-window tensors within a byte budget: dropped windows are rebuilt exactly, results do not move."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_support import tiny_case_arrays, write_case
from steering_support import long_case, tiny_steering_setups

from MedSegLensLib.data import read_case
from MedSegLensLib.steering import RegionSpec, SteeringSession, SteeringSpec, open_session
from MedSegLensLib.steering.window_cache import WindowCache, tensor_bytes

pytestmark = pytest.mark.one_thread  # tiny networks: one torch thread (conftest.py)


@pytest.fixture(scope="module")
def setups(workdir):
    return tiny_steering_setups(workdir, "sae")


def _budgeted(session: SteeringSession, batches: float) -> SteeringSession:
    """The same session with room for `batches` batches of windows' tensors."""
    budget_gb = batches * len(session.batches[0].slices) * session.cache_bytes()["per_window"] / 1024**3
    return SteeringSession(
        session.model, session.sae, session.case, session.layer, scales=session.scales, cache_budget_gb=budget_gb
    )


def _specs(session: SteeringSession, mask) -> list[SteeringSpec]:
    latents = tuple(int(i) for i in torch.argsort(session.scales.frequency, descending=True)[:2])
    box = RegionSpec("mask", path=str(mask))
    return [
        SteeringSpec(latents, (2.0, -1.0), "additive", box),
        SteeringSpec(latents, (3.0, 0.5), "additive"),
        SteeringSpec(latents, (2.5, 0.0), "multiplicative", RegionSpec("tumour-margin", 4)),
        SteeringSpec(latents, (2.0, 0.0), "clamp", box),
    ]


@pytest.mark.parametrize(("arch", "batch_size"), [("unet", None), ("unet", 1), ("segformer", None)])
def test_a_budget_that_drops_windows_gives_the_same_logits_bit_for_bit(setups, workdir, monkeypatch, arch, batch_size):
    model, sae_dir, _ = setups[arch]
    if batch_size is not None:  # MONAI hands single windows as views of the image: rebuilt the same way
        monkeypatch.setitem(model.config.sliding_window, "batch_size", batch_size)
    case, mask = long_case(workdir, f"cache-{arch}", 64, 7, (slice(4, 10), slice(8, 16), slice(8, 16)))
    whole = open_session(model, sae_dir, case)
    assert whole.cache_bytes()["windows"] == whole.windows_total * whole.cache_bytes()["per_window"]
    tight = _budgeted(whole, 1.5)  # one batch fits
    assert torch.equal(tight.logits, whole.logits)
    budget = tight.window_cache.budget
    assert 0 < tight.window_cache.nbytes <= budget and len(tight.window_cache.held()) < len(tight.batches)
    for spec in _specs(whole, mask):
        for exact in (True, False):
            ours, reference = tight.steer(spec, exact=exact), whole.steer(spec, exact=exact)
            assert torch.equal(ours.logits, reference.logits), (spec, exact)
            assert ours.preview == reference.preview
            assert tight.window_cache.nbytes <= budget
    assert tight.window_cache.rebuilds > 0
    for mine, theirs in zip(tight.batches, whole.batches):  # a rebuilt batch holds exactly what was recorded
        assert _all_equal(mine.tensors(), theirs.tensors())


def test_an_image_smaller_than_a_window_is_rebuilt_from_the_padded_image(setups, workdir):
    model, sae_dir, _ = setups["unet"]
    images, labels = tiny_case_arrays(np.random.default_rng(3), shape=(12, 20, 14))
    case_dir = write_case(workdir / "cache-small", "cache-small", images, labels, np.diag([2.0, 2.0, 2.0, 1.0]))
    whole = open_session(model, sae_dir, read_case(case_dir))
    assert any(a or b for a, b in whole.pads)
    none = _budgeted(whole, 0.0)  # holds nothing: every steer rebuilds
    spec = SteeringSpec((2, 7), (2.0, 1.0), "additive", RegionSpec("tumour-margin", 2))
    assert torch.equal(none.steer(spec).logits, whole.steer(spec).logits)
    assert torch.equal(none.steer(spec, exact=False).logits, whole.steer(spec, exact=False).logits)
    assert none.window_cache.nbytes == 0 and none.window_cache.rebuilds >= 2
    assert _all_equal(none.batches[0].tensors(), whole.batches[0].tensors())


def _all_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_all_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_an_update_that_reaches_more_windows_than_fit_rebuilds_only_those_that_do_not():
    """Least recently used goes first, except what the current update already used: a scan over 4 windows with
    room for 2 keeps the first 2 it met and rebuilds the other 2 on each pass (plain LRU would rebuild all 4)."""
    item = torch.zeros(256)  # 1 KiB
    built = []
    cache = WindowCache(2 * tensor_bytes(item), lambda i: built.append(i) or item.clone())
    for i in range(4):
        cache.put(i, item.clone())
    assert cache.held() == [2, 3] and cache.nbytes == 2 * item.nbytes
    for _ in range(3):
        with cache.update():
            for i in range(4):
                cache.get(i)
        assert cache.nbytes <= 2 * item.nbytes
    assert built == [0, 1, 2, 3, 2, 3, 2, 3] and cache.held() == [0, 1]
    with cache.update():  # a new region that reaches window 3 only: it takes the least recently used place
        cache.get(3)
    assert cache.held() == [1, 3]


def test_tensor_bytes_counts_a_storage_shared_by_views_once():
    base = torch.zeros(4, 100)
    assert tensor_bytes((base, base[1:], [base[:2]], torch.ones(10, dtype=torch.float64), 3)) == 1600 + 80
