"""The stage runner's cache rules on toy stages: keys, done markers, resume, clearing, dependents."""

from __future__ import annotations

import dataclasses
import json

import pytest

from MedSegLensLib.errors import ParameterError
from MedSegLensLib.pipeline import DemoSettings, Stage, run_stages
from MedSegLensLib.pipeline.stages import MARKERS, RUN_RECORD


def toy_stages(calls: list, fail_in: str | None = None) -> list[Stage]:
    def work(name):
        def run(ctx):
            calls.append((name, ctx.resume))
            out = ctx.path(name)
            out.mkdir(exist_ok=True)
            (out / f"part-{len(list(out.iterdir()))}").write_text("x")
            if name == fail_in:
                raise KeyboardInterrupt
            return {"parts": len(list(out.iterdir()))}

        return run

    return [
        Stage("a", "first", work("a"), uses=("seed",), outputs=("a",)),
        Stage("b", "second", work("b"), deps=("a",), uses=("failure_dice",), outputs=("b",)),
        Stage("c", "independent of b", work("c"), deps=("a",), outputs=("c",)),
    ]


def ran(tmp_path) -> list[str]:
    stages = json.loads((tmp_path / RUN_RECORD).read_text())["stages"]
    return [name for name, s in stages.items() if s["status"] == "ran"]


def test_rerun_skips_and_config_change_reruns_users_and_dependents(tmp_path):
    calls: list = []
    run_stages(toy_stages(calls), DemoSettings(), tmp_path, log=lambda line: None)
    assert [c[0] for c in calls] == ["a", "b", "c"]
    run_stages(toy_stages(calls), DemoSettings(), tmp_path, log=lambda line: None)
    assert len(calls) == 3 and ran(tmp_path) == []
    run_stages(toy_stages(calls), DemoSettings(failure_dice=0.4), tmp_path, log=lambda line: None)
    assert ran(tmp_path) == ["b"]
    run_stages(toy_stages(calls), DemoSettings(failure_dice=0.4, seed=3), tmp_path, log=lambda line: None)
    assert ran(tmp_path) == ["a", "b", "c"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["part-0"]  # cleared before a fresh run


def test_deleted_marker_reruns_from_scratch_and_interruption_resumes(tmp_path):
    calls: list = []
    run_stages(toy_stages(calls), DemoSettings(), tmp_path, log=lambda line: None)
    (tmp_path / MARKERS / "b.done.json").unlink()
    run_stages(toy_stages(calls), DemoSettings(), tmp_path, log=lambda line: None)
    assert ran(tmp_path) == ["b"] and calls[-1] == ("b", False)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["part-0"]
    (tmp_path / MARKERS / "a.done.json").unlink()
    with pytest.raises(KeyboardInterrupt):
        run_stages(toy_stages(calls, fail_in="a"), DemoSettings(), tmp_path, log=lambda line: None)
    spent = json.loads((tmp_path / MARKERS / "a.started.json").read_text())["seconds_before"]
    assert spent > 0
    run_stages(toy_stages(calls), DemoSettings(), tmp_path, log=lambda line: None)
    assert calls[-3:] == [("a", True), ("b", False), ("c", False)]
    assert json.loads((tmp_path / MARKERS / "a.done.json").read_text())["seconds"] >= round(spent, 1)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["part-0", "part-1"]  # kept for the resume


def test_a_changed_sae_default_reruns_that_architectures_sae_stages_only(tmp_path, monkeypatch):
    """An upgraded default (sae/defaults.py) must not leave a workspace's SAE at the old layer; a configured
    layer is what the key sees when there is one."""
    from MedSegLensLib.sae import defaults

    calls: list = []

    def plan(arch: str):
        return lambda ctx: calls.append((arch, *ctx.config.sae_plan(arch))) or {}

    stages = [
        Stage("sae_unet", "unet", plan("unet"), uses=("sae_layer:unet", "sae_size:unet")),
        Stage("sae_segformer", "segformer", plan("segformer"), uses=("sae_layer:segformer",)),
    ]
    run_stages(stages, DemoSettings(), tmp_path, log=lambda line: None)
    assert calls == [("unet", *DemoSettings().sae_plan("unet")), ("segformer", *DemoSettings().sae_plan("segformer"))]
    assert calls[1][1] == defaults.DEFAULTS["segformer"].layer
    moved = dataclasses.replace(defaults.DEFAULTS["segformer"], layer="stages.2")
    monkeypatch.setitem(defaults.DEFAULTS, "segformer", moved)
    run_stages(stages, DemoSettings(), tmp_path, log=lambda line: None)
    assert ran(tmp_path) == ["sae_segformer"] and calls[-1][:2] == ("segformer", "stages.2")
    run_stages(stages, DemoSettings(layers=(("segformer", "stages.2"),)), tmp_path, log=lambda line: None)
    assert ran(tmp_path) == []  # configured = the default it resolves to: same plan, same key
    run_stages(stages, DemoSettings(sae_k=4), tmp_path, log=lambda line: None)
    assert ran(tmp_path) == ["sae_unet"] and calls[-1][0] == "unet" and calls[-1][3] == 4


def test_a_graph_with_an_unknown_dependency_is_refused(tmp_path):
    stages = [Stage("b", "needs a", lambda ctx: {}, deps=("a",))]
    with pytest.raises(ParameterError, match="stage b"):
        run_stages(stages, DemoSettings(), tmp_path, log=lambda line: None)


def test_config_files_round_trip_and_unknown_keys_are_refused(tmp_path):
    from MedSegLensLib.errors import InputError
    from MedSegLensLib.steering.study import StudySettings

    path = tmp_path / "demo.json"
    quick = DemoSettings.quick()
    path.write_text(json.dumps(quick.to_json()))
    assert DemoSettings.from_file(path) == quick
    path.write_text(json.dumps({"epochs": {"unet": 3, "segformer": 4}, "study": {"test_cases": 2}}))
    custom = DemoSettings.from_file(path)
    assert custom.epochs_of("segformer") == 4 and custom.study.test_cases == 2 and custom.spacing == 2.0
    path.write_text(json.dumps({"epoch": 3}))
    with pytest.raises(ParameterError, match="unknown demo settings \\['epoch'\\]"):
        DemoSettings.from_file(path)
    with pytest.raises(ParameterError, match="unknown study settings \\['epoch'\\]"):
        StudySettings.from_file(path)
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="must be a JSON object"):
        DemoSettings.from_file(path)
