"""The `train`, `evaluate` and `layers` commands on tiny cohorts (in-process; `segment` is in test_models_inference)."""

from __future__ import annotations

import csv
import json

import pytest
from models_support import one_thread, trained_tiny_model, write_cohort  # noqa: F401 (fixtures)

from MedSegLensLib.cli.main import main
from MedSegLensLib.models import load_model, tiny_config


def test_train_command_with_a_config_file_and_a_population_filter(workdir, capsys):
    cohort = write_cohort(workdir / "mixed", 4, seed=3, population="adult")
    other = write_cohort(workdir / "ped", 2, seed=4, prefix="ped", population="pediatric")
    config_file = workdir / "tiny.json"
    config_file.write_text(json.dumps(tiny_config("segformer").to_json()))
    out = workdir / "model"
    args = [
        "train",
        "--config",
        str(config_file),
        "--data",
        str(cohort),
        str(other),
        "--population",
        "adult",
        "--out",
        str(out),
        "--epochs",
        "2",
        "--seed",
        "1",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "trained segformer on 4 case(s)" in captured.out and "validation Dice" in captured.out
    assert "val Dice" in captured.err and "epoch=2/2" in captured.err  # the progress bar
    model = load_model(out, device="cpu")
    assert all(c.startswith("case-") for c in model.provenance["train_cases"] + model.provenance["val_cases"])
    assert main(args) == 2
    assert "already holds a trained model" in capsys.readouterr().err


def test_train_command_with_a_default_architecture(workdir, capsys):
    cohort = write_cohort(workdir / "adult", 2, seed=5)
    out = workdir / "unet"
    assert (
        main(
            [
                "train",
                "--arch",
                "unet",
                "--data",
                str(cohort),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--patch",
                "16",
                "16",
                "16",
                "--val-fraction",
                "0",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    model = load_model(out, device="cpu")
    assert model.config.architecture == "unet" and model.config.hyper_parameters["channels"] == [16, 32, 64, 128]
    assert model.config.patch_size == (16, 16, 16)


def test_evaluate_command_scores_each_case_and_summarises_by_population(workdir, capsys):
    model_dir = trained_tiny_model("unet", workdir)
    tumours = write_cohort(workdir / "eval-adult", 3, seed=21, prefix="adu")
    healthy = write_cohort(workdir / "eval-healthy", 0, seed=22, prefix="hlt", healthy=2)
    out = workdir / "scores.csv"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(model_dir),
                "--data",
                str(tumours),
                str(healthy),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "population" in printed and "healthy" in printed and f"wrote {out}" in printed
    rows = list(csv.DictReader(out.open()))
    assert [r["case_id"] for r in rows] == ["adu-000", "adu-001", "adu-002", "hlt-000", "hlt-001"]
    assert {r["population"] for r in rows} == {"adult", "healthy"}
    for row in rows:
        for region in ("WT", "TC", "ET"):
            assert 0.0 <= float(row[f"dice_{region}"]) <= 1.0 and float(row[f"hd95_{region}"]) >= 0.0
    adult = [r for r in rows if r["population"] == "adult"]
    assert min(float(r["dice_WT"]) for r in adult) > 0.5, "the trained tiny model finds the tumours"
    for row in rows:
        if row["population"] == "healthy":
            assert float(row["ref_volume_ml"]) == 0.0
            assert float(row["dice_WT"]) == (1.0 if float(row["pred_volume_ml"]) == 0 else 0.0)
    summary = list(csv.DictReader(out.with_suffix(".summary.csv").open()))
    assert {(r["population"], r["region"]) for r in summary} == {
        (p, g) for p in ("adult", "healthy", "all") for g in ("WT", "TC", "ET")
    }
    adult_wt = next(r for r in summary if r["population"] == "adult" and r["region"] == "WT")
    assert int(adult_wt["n"]) == 3
    assert float(adult_wt["dice_mean"]) == pytest.approx(sum(float(r["dice_WT"]) for r in adult) / 3, abs=1e-3)


def test_layers_command_lists_blocks_with_shapes(workdir, capsys):
    model_dir = trained_tiny_model("segformer", workdir)
    assert main(["layers", "--model", str(model_dir), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["patch_size"] == [16, 16, 16]
    names = [layer["name"] for layer in listing["layers"]]
    assert "stages.0" in names and "decoder.fuse_act" in names and names[-1] == "decoder"
    assert listing["layers"][-1]["shape"] == [4, 16, 16, 16]
    assert main(["layers", "--model", str(model_dir)]) == 0
    table = capsys.readouterr().out
    assert "encoder stage 1" in table and "stride 2x2x2" in table
