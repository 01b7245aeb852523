"""The demo job end to end in a tiny configuration, through the real `medseglens demo` command, and its cache rules."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import subprocess_env

from MedSegLensLib.pipeline import DemoSettings, build_stages, default_cohorts
from MedSegLensLib.pipeline.stages import MARKERS, RUN_RECORD
from MedSegLensLib.report import load_section
from MedSegLensLib.steering.study.report import SELECTION_LABELS
from MedSegLensLib.steering.study.selection import SELECTIONS
from MedSegLensLib.viewer.workspace import read_workspace

TINY = DemoSettings.quick().replace(
    spacing=8.0,
    cohorts=default_cohorts(train=4, test=2, adult_test=2, healthy=1, calibration=2),
    epochs=(("unet", 1), ("segformer", 1)),
    val_every=1,
    sae_latents=16,
    sae_k=2,
    sae_rows=4096,
    sae_batch=512,
    sae_adult_cases=2,
    interpret_cards=1,
    diff_bootstrap=20,
    diff_arch_cases=2,
    diff_permutations=4,
    map_latents=2,
)


def run_demo_command(work, config_file):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "MedSegLensLib",
            "demo",
            "--no-serve",
            "--threads",
            "1",
            "--work",
            str(work),
            "--config",
            str(config_file),
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=1200,
    )


def statuses(work) -> dict[str, str]:
    record = json.loads((work / RUN_RECORD).read_text())
    return {name: stage["status"] for name, stage in record["stages"].items()}


def dependents(stages, name: str) -> set[str]:
    out = {name}
    for stage in stages:  # dependencies come first, so one pass closes the set
        if out & set(stage.deps):
            out.add(stage.name)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    config_file = root / "tiny.json"
    config_file.write_text(json.dumps(TINY.to_json()))
    work = root / "work"
    first = run_demo_command(work, config_file)
    assert first.returncode == 0, first.stderr[-3000:]
    return work, config_file, first


@pytest.mark.slow
def test_first_run_builds_every_stage_and_the_report_names_them(built):
    work, _, first = built
    stages = build_stages(TINY)
    assert statuses(work) == {s.name: "ran" for s in stages}
    assert f"demo [1/{len(stages)}] cohorts: running" in first.stderr
    report = work / "report" / "report.html"
    assert f"MedSegLens demo report: {report}" in first.stdout
    for stage in stages:
        assert (work / MARKERS / f"{stage.name}.done.json").is_file()
        assert not (work / MARKERS / f"{stage.name}.started.json").exists()
    for spec in TINY.cohorts:
        assert (work / "cohorts" / spec.name / "manifest.csv").is_file()
    for arch in TINY.architectures:
        assert (work / "models" / arch / "model.json").is_file()
        assert (work / "evaluation" / f"{arch}_scores.csv").is_file()
        assert (work / "stores" / arch).is_dir()
        assert (work / "saes" / arch / "sae.json").is_file()
        assert (work / "interpret" / arch / "latents.json").is_file()
        assert (work / "diffing" / f"populations-{arch}" / "section.json").is_file()
    assert (work / "diffing" / "architectures" / "section.json").is_file()
    assert (work / "evaluation" / "failure_map.png").stat().st_size > 1000
    steering = load_section(work / "steering")
    methods = {row[3] for row in steering.tables[0].rows}
    assert {"mean-diff", "random"} <= methods and any(m.startswith("sae:") for m in methods)
    # the oracle and every label-free selection get rows of their own, under the labels the report defines
    assert {row[2] for row in steering.tables[0].rows} == {SELECTION_LABELS[s] for s in SELECTIONS}
    html = report.read_text()
    for stage in stages:
        assert f"Stage {stage.name}" in html or f"<td>{stage.name}</td>" in html, stage.name
    for stage in ("cohorts", "evaluate", "latent_maps", "report", "train_unet", "sae_train_segformer"):
        assert f"Stage {stage}:" in html


@pytest.mark.slow
def test_the_workspace_opens_on_a_case_with_latent_maps_on_its_grid(built):
    work, _, _ = built
    workspace = read_workspace(work)
    first = workspace.cases[0]
    assert first.overlays and first.prediction
    t1n = nib.load(str(workspace.resolve(first.folder) / f"{first.case_id}-t1n.nii.gz"))
    for overlay in first.overlays:
        heat = nib.load(str(workspace.resolve(overlay.file)))
        assert heat.shape == t1n.shape and np.allclose(heat.affine, t1n.affine)
        assert np.asarray(heat.dataobj).max() > 0
    scored = [c for c in workspace.cases if c.dice.get("WT") is not None]
    assert len(scored) == sum(s.cases for s in TINY.role("test"))
    assert {c.population for c in workspace.cases} == {"adult", "pediatric", "ssa", "healthy"}


@pytest.mark.slow
def test_rerun_skips_everything_and_a_deleted_marker_reruns_only_its_dependents(built):
    work, config_file, _ = built
    markers = {p.name: p.read_text() for p in (work / MARKERS).glob("*.done.json")}
    again = run_demo_command(work, config_file)
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(statuses(work).values()) == {"skipped"}
    assert {p.name: p.read_text() for p in (work / MARKERS).glob("*.done.json")} == markers
    (work / MARKERS / "interpret_unet.done.json").unlink()
    third = run_demo_command(work, config_file)
    assert third.returncode == 0, third.stderr[-3000:]
    expected = dependents(build_stages(TINY), "interpret_unet")
    assert expected == {"interpret_unet", "diffing", "triage", "latent_maps", "report"}  # not steering: no labels
    assert {n for n, s in statuses(work).items() if s == "ran"} == expected
