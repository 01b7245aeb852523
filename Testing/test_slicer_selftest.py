"""The module's in-Slicer self-test (`MedSegLensTest`, CTest py_MedSegLens) run here through FakeSlicerGui.

Desktop Slicer cannot run on this machine; what the self-test needs from it
beyond slicer-core is Qt only (`slicer.app.processEvents`, the temporary folder
Slicer picks with Qt, `delayDisplay`), which FakeSlicerGui and this file stand
in for. The scene, the worker subprocess, the tiny model and the tiny SAE the
self-test builds are real, so a self-test that breaks here breaks in Slicer.
"""

from __future__ import annotations

import tempfile
import types
from pathlib import Path

import pytest

pytest.importorskip("slicer")
scene_api = pytest.importorskip("MedSegLensLib.scene")

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.scene]
ROOT = Path(__file__).resolve().parents[1]


def test_the_in_slicer_self_test_passes(monkeypatch, tmp_path):
    import fake_slicer_gui
    import slicer
    import slicer.util

    scene = scene_api.create_headless_slicer().scene
    module, _ = fake_slicer_gui.load_module(monkeypatch, ROOT / "MedSegLens" / "MedSegLens.py", scene)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(processEvents=lambda: None), raising=False)
    monkeypatch.setattr(slicer.util, "tempDirectory", lambda *a, **k: tempfile.mkdtemp(dir=tmp_path), raising=False)
    test = module.MedSegLensTest()
    test.runTest()
    assert test.displayed.count("Test passed") == 3
    accepted = [
        scene.GetNthNode(i)
        for i in range(scene.GetNumberOfNodes())
        if scene.GetNthNode(i).GetAttribute("MedSegLens.Role") == "correction"
    ]
    assert len(accepted) == 1 and scene_api.read_provenance(accepted[0]).mode == "additive"
