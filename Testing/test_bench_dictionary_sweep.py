"""bench/dictionary_sweep.py runs end to end on a tiny demo workspace (the same code as the demo-size run).

The workspace is built by the demo job itself up to the U-Net's activation store; no number is asserted
beyond what must hold for any run (shares in [0, 1], counts that add up, the workspace left untouched).
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from conftest import ROOT

from MedSegLensLib.pipeline import DemoSettings, default_cohorts
from MedSegLensLib.pipeline.demo import run_demo
from MedSegLensLib.sae import SAETrainingSettings

pytestmark = pytest.mark.timeout(300)

TINY = DemoSettings.quick().replace(
    spacing=8.0,
    architectures=("unet",),
    cohorts=default_cohorts(train=3, test=2, adult_test=2, healthy=1, calibration=0),
    epochs=(("unet", 1),),
    sae_adult_cases=3,
)


def _bench():
    spec = importlib.util.spec_from_file_location("dictionary_sweep", ROOT / "bench" / "dictionary_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sweep_trains_each_size_and_reports_labels_and_artefacts_without_touching_the_workspace(tmp_path):
    workspace = tmp_path / "demo"
    torch.set_num_threads(1)
    run_demo(TINY, workspace, until="sae_extract_unet")
    before = sorted((p.relative_to(workspace), p.stat().st_mtime_ns) for p in workspace.rglob("*"))
    bench = _bench()
    args = bench.parse(
        ["--workspace", str(workspace), "--architectures", "unet", "--sizes", "16", "32", "--rows", "2048"]
        + ["--cases-per-population", "1", "--lr-factors", "1", "0.25", "--out", str(tmp_path / "sweep")]
    )
    rows = bench.run(args)
    assert [(r["latents"], r["k"], r["lr_factor"]) for r in rows] == [
        (16, 1, 1),
        (16, 1, 0.25),
        (32, 2, 1),
        (32, 2, 0.25),
    ]
    learning_rates = [
        SAETrainingSettings(**json.loads((path / "sae.json").read_text())["training"]["config"]).learning_rate()
        for path in sorted((tmp_path / "sweep" / "unet").glob("16-*"))
    ]
    assert len(learning_rates) == 2 and min(learning_rates) == pytest.approx(max(learning_rates) / 4)
    for row in rows:
        assert row["layer"] == TINY.layer_of("unet")
        assert 0 <= row["fvu"] and row["l0"] > 0
        assert 0 <= row["dead_rows"] <= 1 and 0 <= row["dead_voxels"] <= 1
        assert row["active"] == round(row["latents"] * (1 - row["dead_voxels"]))
        assert row["validated"] + sum(row["artefacts"].values()) <= row["active"]
        assert row["validated_share"] == round(row["validated"] / row["active"], 4)
    table = (tmp_path / "sweep" / "dictionary_sweep.md").read_text()
    assert "| unet |" in table and "--sizes 16 32" in table
    assert sorted((p.relative_to(workspace), p.stat().st_mtime_ns) for p in workspace.rglob("*")) == before


def test_fixed_k_separates_the_size_from_k_and_a_k_not_below_every_size_is_refused(tmp_path, capsys):
    bench = _bench()
    common = ["--workspace", str(tmp_path), "--sizes", "256", "1024"]
    assert bench.settings_of(bench.parse(common)) == [(256, 16, 1), (1024, 64, 1)]
    fixed = bench.parse([*common, "--k", "16", "32", "--lr-factors", "1", "0.5"])
    assert bench.settings_of(fixed) == [(n, k, f) for n in (256, 1024) for k in (16, 32) for f in (1, 0.5)]
    for bad in (["--k", "256"], ["--k", "0"]):
        with pytest.raises(SystemExit):
            bench.parse([*common, *bad])
        assert "each k must be at least 1 and below every size" in capsys.readouterr().err
