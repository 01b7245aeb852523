"""The demo's `triage` stage on the tiny demo settings: every held-out case ranked, the worklist named in
workspace.json (the viewer opens on rank 1), and the report's AUROC table and top worklist rows.

The tiny settings' one-epoch U-Net draws tumour everywhere, so every case fails by the project's definition and
the risk cannot be fit; the stage then writes a section saying so (the path `test_pipeline_demo` runs). Here the
failure label of the triage pass alternates between cases instead, so calibration and test sets hold both
classes: this checks the stage's wiring with the real triage run, not what the labels mean.
"""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import pytest
from test_pipeline_demo import TINY

from MedSegLensLib.diffing.labels import label_text, read_labels
from MedSegLensLib.pipeline import run_demo
from MedSegLensLib.pipeline.triage_stage import HEALTHY_CALIBRATION_CASES, weights_sentence
from MedSegLensLib.report import load_section
from MedSegLensLib.steering.scales import sae_sha256
from MedSegLensLib.triage.read import read_worklist
from MedSegLensLib.viewer.triage_panel import default_case, load_worklist
from MedSegLensLib.viewer.workspace import read_workspace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_triage_stage_ranks_the_held_out_cases_into_the_workspace_and_the_report(tmp_path, monkeypatch, capfd):
    import torch

    torch.set_num_threads(1)
    calls = itertools.count()
    monkeypatch.setattr("MedSegLensLib.triage.measure.failing_regions", lambda row: ["WT"] if next(calls) % 2 else [])
    work = tmp_path / "work"
    results = run_demo(TINY, work)
    assert results["triage"].status == "ran" and results["latent_maps"].status == "ran"
    log = capfd.readouterr().err
    assert "calibrate: 100%" in log and "triage: 100%" in log, "the stage shows a bar per pass over the cases"

    worklist = read_worklist(work / "triage")
    test_cases = sum(spec.cases for spec in TINY.role("test"))
    assert [case["rank"] for case in worklist.cases] == list(range(1, test_cases + 1))
    assert worklist.sae_sha256 == sae_sha256(work / "saes" / TINY.steering_architecture)
    labels = read_labels(work / "interpret" / TINY.steering_architecture / "latents.json")
    tops = [top for case in worklist.cases for top in case["top_latents"]]
    assert tops and all(top["description"] == label_text(labels, top["latent"]) != "" for top in tops), (
        "the worklist's top latents carry the interpret stage's labels"
    )
    workspace = read_workspace(work)
    assert workspace.triage == "triage"
    assert default_case(workspace, load_worklist(workspace)).case_id == worklist.cases[0]["case_id"]

    # calibrated on every population it ranks, healthy included (a cohort the stage generates), and on adult
    # training cases the SAE did not see (its own have in-sample reconstruction error)
    reference = json.loads((work / "triage" / "reference.json").read_text())
    assert set(reference["failure_rates"]) >= {spec.population for spec in TINY.role("test")}
    calibrated = sum(spec.cases for spec in TINY.role("train")) - TINY.sae_adult_cases
    calibrated += sum(spec.cases for spec in TINY.role("calibration")) + HEALTHY_CALIBRATION_CASES
    section = load_section(work / "sections" / "triage")
    assert f"fit on {calibrated} labelled cases" in section.paragraphs[0]
    auroc, top = section.tables
    assert {row[0] for row in auroc.rows} >= {"pooled", "adult"}
    assert any(row[2] == "sae_risk" and row[3] != "n/a" for row in auroc.rows if row[0] == "pooled")
    assert [row[1] for row in top.rows] == [case["case_id"] for case in worklist.cases[:10]]
    assert "Stage triage:" in (work / "report" / "report.html").read_text()


def test_the_report_says_which_weights_ranked_and_the_calibration_failures_per_population():
    calibration = [SimpleNamespace(population=p) for p in ["adult"] * 16 + ["pediatric"] * 6 + ["healthy"] * 4]
    reference = SimpleNamespace(
        weights="equal (3 failures < 10 per feature)",
        failure_rates={"all": 3 / 26, "adult": 0.0, "pediatric": 2 / 6, "healthy": 1 / 4},
    )
    sentence = weights_sentence(reference, calibration)
    assert sentence.startswith("The risk's weights: equal (3 failures < 10 per feature)")
    assert "calibration failures: 3 of 26 (adult 0 of 16, healthy 1 of 4, pediatric 2 of 6)" in sentence
