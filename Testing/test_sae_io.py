"""Saving/loading SAEs, compatibility refusals, resumable training, fidelity metrics."""

from __future__ import annotations

import json

import pytest
import torch

from MedSegLensLib.errors import CompatibilityError, IntegrityError, OutputError
from MedSegLensLib.sae import (
    SAEInfo,
    SAETrainingSettings,
    TensorRows,
    Trainer,
    check_compatible,
    dice_recovered,
    evaluate_fidelity,
    load_sae,
    save_sae,
)
from MedSegLensLib.sae.synthetic import planted_rows

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def trained():
    rows, _ = planted_rows(6000, 12, 24, 3, scale=5.0)
    trainer = Trainer(TensorRows(rows), SAETrainingSettings(n_latents=48, k=3, total_rows=40_000, batch_size=500))
    sae = trainer.run(show_progress=False)
    return sae, trainer.summary(), rows


def test_save_load_round_trip_gives_identical_codes(tmp_path, trained):
    sae, summary, rows = trained
    info = SAEInfo("ab" * 32, "decoder.1", {"input_scale": summary["input_scale"]}, summary)
    save_sae(sae, tmp_path / "sae", info)
    loaded = load_sae(tmp_path / "sae")
    assert loaded.config == sae.config and float(loaded.threshold) == float(sae.threshold) > 0
    assert torch.equal(loaded.encode(rows[:200]), sae.encode(rows[:200]))
    sidecar = json.loads((tmp_path / "sae" / "sae.json").read_text())
    assert sidecar["layer"] == "decoder.1" and sidecar["n_latents"] == 48 and sidecar["kind"] == "batchtopk"
    assert sidecar["training"]["rows_seen"] == 40_000
    with pytest.raises(OutputError, match="--overwrite"):
        save_sae(sae, tmp_path / "sae", info)


def test_modified_weights_are_refused(tmp_path, trained):
    sae = trained[0]
    save_sae(sae, tmp_path / "sae", SAEInfo("f" * 64, "bottleneck"))
    weights = tmp_path / "sae" / "sae.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        load_sae(tmp_path / "sae")


def test_incompatible_model_layer_or_width_is_refused_with_one_line(tmp_path, trained):
    save_sae(trained[0], tmp_path / "sae", SAEInfo("1234abcd" * 8, "decoder.1"))
    sae = load_sae(tmp_path / "sae")
    check_compatible(sae, "1234abcd" * 8, "decoder.1", 12)
    cases = [
        (("ffff0000" * 8, "decoder.1", 12), "trained on model 1234abcd1234"),
        (("1234abcd" * 8, "bottleneck", 12), "--layer decoder.1"),
        (("1234abcd" * 8, "decoder.1", 16), "expects 12 channels"),
    ]
    for args, message in cases:
        with pytest.raises(CompatibilityError, match=message) as err:
            check_compatible(sae, *args)
        assert "\n" not in str(err.value)


def test_training_resumes_bit_for_bit_from_a_checkpoint(tmp_path):
    rows, _ = planted_rows(5000, 8, 16, 2)
    config = SAETrainingSettings(
        n_latents=32, k=2, total_rows=24_000, batch_size=400, checkpoint_every=20, dead_after_rows=2000, seed=5
    )
    straight = Trainer(TensorRows(rows), config).run(show_progress=False)

    class Interrupt(Exception):
        pass

    def stop_at_30(info):
        if info.step == 30:
            raise Interrupt

    first = Trainer(TensorRows(rows), config, checkpoint_dir=tmp_path / "run")
    with pytest.raises(Interrupt):
        first.run(progress=stop_at_30, show_progress=False)
    resumed = Trainer(TensorRows(rows), config, checkpoint_dir=tmp_path / "run")
    assert resumed.state.step == 20  # the last checkpoint, not the interruption
    result = resumed.run(show_progress=False)
    for name, value in straight.state_dict().items():
        assert torch.equal(value, result.state_dict()[name]), name
    with pytest.raises(CompatibilityError, match="other settings"):
        Trainer(
            TensorRows(rows),
            SAETrainingSettings(n_latents=32, k=3, total_rows=24_000, batch_size=400),
            checkpoint_dir=tmp_path / "run",
        )


def test_progress_reports_falling_fvu(trained):
    rows = trained[2]
    seen = []
    Trainer(TensorRows(rows), SAETrainingSettings(n_latents=48, k=3, total_rows=30_000, batch_size=500)).run(
        progress=seen.append, show_progress=False
    )
    assert [p.step for p in seen] == list(range(1, 61))
    assert sum(p.fvu for p in seen[-10:]) < 0.5 * sum(p.fvu for p in seen[:10])
    assert all(p.l0 > 0 and 0 <= p.dead_fraction <= 1 for p in seen)


def test_fidelity_metrics_match_direct_computation(trained):
    sae, _, rows = trained
    held = planted_rows(3000, 12, 24, 3, scale=5.0, row_seed=9)[0]
    report = evaluate_fidelity(sae, TensorRows(held).scan(700))
    x = held.double()
    err = (sae.forward(held).double() - x).pow(2)
    var = (x - x.mean(0)).pow(2)
    assert report.rows == 3000
    assert report.explained_variance == pytest.approx(1 - float(err.sum() / var.sum()), abs=1e-9)
    assert report.explained_variance_per_channel_mean == pytest.approx(
        float((1 - err.sum(0) / var.sum(0)).mean()), abs=1e-9
    )
    assert report.fvu == pytest.approx(1 - report.explained_variance)
    l0 = (sae.encode(held) > 0).sum(1).double()
    assert report.l0_mean == pytest.approx(float(l0.mean()))
    assert report.l0_p95 == float(torch.quantile(l0, 0.95, interpolation="higher"))
    fires = (sae.encode(held) > 0).any(0)
    assert report.dead_fraction == pytest.approx(1 - float(fires.double().mean()))
    assert sum(report.firing_frequency_counts) == int(fires.sum())
    capped = evaluate_fidelity(sae, TensorRows(held).scan(700), max_rows=1000)
    assert capped.rows == 1000


def test_dice_recovered_uses_zero_ablation_as_floor():
    dice = {"original": {"WT": 0.9, "ET": 0.8}, "sae": {"WT": 0.88, "ET": 0.8}, "zero_ablation": {"WT": 0.1, "ET": 0.8}}
    recovered = dice_recovered(lambda mode: dice[mode])
    assert recovered["WT"] == pytest.approx(0.975)
    assert recovered["ET"] != recovered["ET"]  # NaN: ablation did not hurt ET
