"""GPU out-of-memory: inference retries with fewer windows, training stops resumably, each with one line.

There is no GPU here, so the error is injected: a forward pre-hook on the real network raises
`torch.OutOfMemoryError` (what PyTorch raises for a failed CUDA allocation) at chosen calls. The branches
that need a CUDA tensor (stitching on the CPU, moving the case to the CPU) are not exercised here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_support import one_thread, write_cohort  # noqa: F401 (fixture)
from worker_cases import save_tiny_model, write_case

from MedSegLensLib.data import read_case
from MedSegLensLib.errors import ParameterError
from MedSegLensLib.models import TrainingSettings, labelled_cases, load_model, tiny_config, train_model
from MedSegLensLib.models import backbone_training as train_module
from MedSegLensLib.models.checkpoint import has_checkpoint


class OutOfMemoryAt:
    """A forward pre-hook that raises torch.OutOfMemoryError at the listed calls (1-based) and records batches."""

    def __init__(self, calls):
        self.calls, self.count, self.batches = set(calls), 0, []

    def __call__(self, module, inputs):
        self.count += 1
        if self.count in self.calls or "all" in self.calls:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected by the test)")
        self.batches.append(int(inputs[0].shape[0]))


@pytest.fixture(scope="module")
def model_and_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("oom")
    return save_tiny_model(root / "model"), read_case(write_case(root, np.random.default_rng(0)))


def test_inference_retries_with_one_window_at_a_time_and_gives_the_same_labels(model_and_case, capsys):
    model_dir, case = model_and_case
    model = load_model(model_dir, device="cpu")
    assert model.config.sliding_window["batch_size"] == 4
    expected = model.predict(case, probabilities=True)
    fault = OutOfMemoryAt({1})
    handle = model.network.register_forward_pre_hook(fault)
    try:
        recovered = model.predict(case, probabilities=True)
    finally:
        handle.remove()
    assert fault.count > 1 and set(fault.batches) == {1}, "the retry ran one window at a time"
    np.testing.assert_array_equal(recovered.labels, expected.labels)
    np.testing.assert_allclose(recovered.probabilities, expected.probabilities, atol=1e-5)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["medseglens: GPU out of memory; retrying with one sliding window at a time"]


def test_inference_with_nothing_left_to_try_is_a_one_line_error(model_and_case):
    model_dir, case = model_and_case
    model = load_model(model_dir, device="cpu")
    model.network.register_forward_pre_hook(OutOfMemoryAt({"all"}))
    with pytest.raises(ParameterError) as info:
        model.predict(case)
    assert "out of memory with one [16, 16, 16] window at a time on cpu" in str(info.value)
    assert "\n" not in str(info.value)


def test_training_stops_resumably_and_the_resumed_run_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    cases = labelled_cases([write_cohort(tmp_path / "cohort", 3, seed=4)])
    settings = TrainingSettings(epochs=2, seed=3, val_fraction=0.0, learning_rate=5e-3)
    config = tiny_config("unet")
    reference = train_model(config, cases, tmp_path / "reference", settings, device="cpu")

    real_build = train_module.build_network
    fault = OutOfMemoryAt({3})  # two steps per epoch (3 cases, batch 2): the first step of epoch 2

    def build_with_fault(cfg):
        network = real_build(cfg)
        network.register_forward_pre_hook(fault)
        return network

    monkeypatch.setattr(train_module, "build_network", build_with_fault)
    with pytest.raises(ParameterError) as info:
        train_model(config, cases, tmp_path / "run", settings, device="cpu")
    message = str(info.value)
    assert "out of memory in epoch 2, step 1 (epoch 1 is saved, continue with --resume)" in message
    assert str(tmp_path / "run") in message and "\n" not in message
    assert has_checkpoint(tmp_path / "run") and not (tmp_path / "run" / "model.json").exists()
    monkeypatch.setattr(train_module, "build_network", real_build)
    resumed = train_model(config, cases, tmp_path / "run", settings, resume=True, device="cpu")
    assert resumed.fingerprint == reference.fingerprint
