"""The layer-comparison bench runs end to end on a tiny baseline folder (tiny U-Net, tiny cohorts)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import ROOT, subprocess_env
from models_support import one_thread, trained_tiny_model, write_cohort  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow  # a real subprocess (torch + MONAI imports) capturing, training and evaluating


def test_layer_bench_compares_every_candidate_layer(workdir, python_exe):
    baseline = workdir / "baseline"
    shutil.copytree(trained_tiny_model("unet", workdir), baseline / "models" / "unet")
    write_cohort(baseline / "cohorts" / "adult_train", 3, seed=50, prefix="tr")
    write_cohort(baseline / "cohorts" / "adult_test", 1, seed=51, prefix="te")
    cmd = [
        python_exe,
        str(ROOT / "bench" / "sae_layers.py"),
        "--work",
        str(workdir / "layers"),
        "--baseline",
        str(baseline),
        "--archs",
        "unet",
        "--kinds",
        "topk",
        "--latents",
        "16",
        "--k",
        "2",
        "--rows",
        "8192",
        "--eval-cases",
        "1",
    ]
    result = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((workdir / "layers" / "sae_layers.json").read_text())
    layers = [row["layer"] for row in report["rows"]]
    # tiny U-Net: encoder 0, encoder 1 / bottleneck, decoder 1, and the head's input (not the logits)
    assert layers == [
        "model.0",
        "model.1.submodule.0",
        "model.1.submodule.1.submodule",
        "model.1.submodule.2",
        "model.1",
    ]
    for row in report["rows"]:
        assert row["kind"] == "topk" and row["l0_mean"] <= 2 and row["heldout_rows"] > 0
        assert set(row["dice"]) == {"original", "sae", "zero_ablation"} and set(row["alignment"]) == {"NCR", "ED", "ET"}
    first = {row["layer"]: row for row in report["rows"]}
    assert first["model.0"]["dice"]["zero_ablation"]["WT"] < first["model.0"]["dice"]["original"]["WT"]
    assert "| unet | `model.1` |" in result.stdout and "Defaults" in result.stdout
