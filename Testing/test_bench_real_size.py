"""bench/real_size.py runs end to end at tiny sizes (the same code as the BraTS-size run), so it cannot rot.

No timing is asserted here: speed belongs to the benchmark's own output.
"""

from __future__ import annotations

import json

import nibabel as nib
import pytest
from conftest import load_bench

pytestmark = pytest.mark.timeout(300)


def _bench():
    return load_bench("real_size")


def test_the_real_size_bench_times_every_step_for_the_three_networks(tmp_path):
    bench = _bench()
    assert bench.REAL_SHAPE == (240, 240, 155)
    plans = bench.nnunet_plans(bench.NNUNET_REAL)["configurations"]["3d_fullres"]
    assert plans["patch_size"] == [128, 128, 128]
    assert plans["architecture"]["arch_kwargs"]["features_per_stage"] == [32, 64, 128, 256, 320, 320]
    rows = bench.run(tmp_path, small=True, timeout=240)
    assert [row["network"] for row in rows] == ["unet", "segformer", "nnunet"]
    for row in rows:
        assert "error" not in row, row
        assert set(row["seconds"]) == set(bench.STEPS)
        assert all(value > 0 for value in row["seconds"].values())
        assert row["ratios"]["segment"] == 1.0
        assert row["case_shape"] == list(bench.SMALL_SHAPE) and 0 < row["peak_gb"] < 8
        assert 0 < row["windows"][0] <= row["windows"][1]
    unet, segformer, nnunet = rows
    # the U-Net's suffix has instance norm: the preview flag is set; the SegFormer's stage 4 gets no preview
    assert unet["preview"] and not segformer["preview"]
    assert unet["segment_labels_equal_session"] and segformer["segment_labels_equal_session"]
    # the nnU-Net came in through the import path: an imported model folder made from a results folder
    manifest = json.loads((tmp_path / "work-nnunet" / "model-nnunet" / "model.json").read_text())
    assert "nnunetv2" in json.dumps(manifest)
    assert nnunet["layer"].startswith("decoder.stages.")
    # the case is a BraTS 2023-style folder with four modalities and a segmentation at 1 mm
    case = tmp_path / "case" / "BraTS-SYN-00000-000"
    for suffix in ("t1n", "t1c", "t2w", "t2f", "seg"):
        image = nib.load(str(case / f"BraTS-SYN-00000-000-{suffix}.nii.gz"))
        assert image.shape == bench.SMALL_SHAPE and tuple(image.header.get_zooms()) == (1.0, 1.0, 1.0)
    for row in rows:  # the session reports what it holds: within its budget, at most every window
        cache = row["cache"]
        assert 0 < cache["per_window_gb"] and cache["held_gb"] <= min(cache["all_windows_gb"], cache["budget_gb"])
    text = bench.table(rows)
    assert all(f"| {name} @" in text for name in ("unet", "segformer", "nnunet"))
    assert len(bench.verdicts(rows)) == 3


def test_the_session_only_run_reports_the_cache_and_rebuilds_what_a_zero_budget_drops(tmp_path):
    bench = _bench()
    options = ["--cache-budget-gb", "0", "--session-only", "--threads", "1"]
    (row,) = bench.run(tmp_path, ["nnunet"], small=True, timeout=240, shape=(40, 32, 24), child_options=options)
    assert "error" not in row, row
    assert set(row["seconds"]) == {
        "read + validate",
        "steer session",
        "first steer",
        "steer",
        "steer preview",
        "labels to case grid",
    }
    assert row["case_shape"] == [40, 32, 24] and row["threads"] == 1
    assert row["cache"]["held_gb"] == 0 and row["cache"]["rebuilds"] > 0
    assert row["peak_gb_after"]["steer session"] <= row["peak_gb"]
