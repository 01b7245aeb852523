"""The module's logic end to end: a real slicer-core scene, a real worker subprocess, a tiny model.

Also drives the Slicer widget itself through FakeSlicerGui (only Qt is faked).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from conftest import WAIT_S, fault_jobs_worker
from worker_cases import SHAPE, save_tiny_model, write_case

pytest.importorskip("slicer")
scene_api = pytest.importorskip("MedSegLensLib.scene")

from fake_slicer_gui import open_widget, run_timer_until_idle  # noqa: E402

from MedSegLensLib.data import MODALITIES, read_volume  # noqa: E402
from MedSegLensLib.errors import ParameterError  # noqa: E402
from MedSegLensLib.slicer_module.logic import JobCallbacks, ModuleLogic, hierarchy_items, node_ids  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.scene]


def scene_state(scene) -> tuple:
    """What a user would see change: the nodes (id, class, name) and the subject-hierarchy items."""
    import slicer

    nodes = tuple((n.GetID(), n.GetClassName(), n.GetName()) for n in map(scene.GetNodeByID, node_ids(scene)))
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    return nodes, tuple((item, hierarchy.GetItemName(item)) for item in hierarchy_items(scene))


def expected_labels(model_dir, case_dir):
    """The model's labels computed in this process, in the input's voxel order."""
    from MedSegLensLib.data import read_case
    from MedSegLensLib.models import load_model

    case = read_case(case_dir, with_labels=False)
    return case.to_source(load_model(model_dir, device="cpu").predict(case).labels)


class Recorder(JobCallbacks):
    """Callbacks that record what the logic reported, in order."""

    def __init__(self):
        self.events = []
        super().__init__(
            progress=lambda f, m: self.events.append(("progress", f, m)),
            log=lambda m: self.events.append(("log", m)),
            finished=lambda node: self.events.append(("finished", node)),
            failed=lambda m: self.events.append(("failed", m)),
            cancelled=lambda: self.events.append(("cancelled",)),
        )

    def last(self):
        return self.events[-1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-unet")


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    return write_case(tmp_path_factory.mktemp("cases"), np.random.default_rng(1), with_labels=True)


@pytest.fixture(scope="module")
def worker():
    with fault_jobs_worker() as process:
        yield process


@pytest.fixture
def logic(worker):
    scene = scene_api.create_headless_slicer().scene
    module_logic = ModuleLogic(scene, worker, scene_api)
    yield module_logic
    module_logic.cancel()


def test_load_segment_and_import_a_new_segmentation(logic, tiny_model, case_dir):
    loaded = logic.load_case_folder(case_dir)
    assert set(loaded) == {*MODALITIES, "reference"}
    volumes = {m: loaded[m] for m in MODALITIES}
    recorder = Recorder()
    logic.segment(volumes, tiny_model, recorder, name="tiny segmentation")
    assert logic.running
    logic.wait(timeout=240)
    kind, node = recorder.last()
    assert kind == "finished", recorder.events
    progress = [e[1] for e in recorder.events if e[0] == "progress"]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert node.IsA("vtkMRMLSegmentationNode") and node.GetName() == "tiny segmentation"
    # The node holds the model's labels, in the input volume's geometry.
    labels = scene_api.segmentation_to_labels(node, scene_api.node_grid(volumes["t1n"]))
    assert labels.shape == SHAPE
    np.testing.assert_array_equal(labels, expected_labels(tiny_model, case_dir))
    provenance = scene_api.read_provenance(node)
    assert provenance.mode == "none" and len(provenance.model_sha256) == 64
    assert provenance.extra["inputs"]["t1n"] == volumes["t1n"].GetName()
    assert not list((logic.worker.session_dir).glob("[0-9]*")), "the finished request's folder was released"


def test_cancel_leaves_the_scene_as_it_was_and_the_next_run_works(logic, tiny_model, case_dir):
    volumes = {m: logic.load_case_folder(case_dir)[m] for m in MODALITIES}
    before = scene_state(logic.scene)
    recorder = Recorder()
    logic.segment(volumes, tiny_model, recorder)
    logic.cancel()
    assert recorder.last() == ("cancelled",) and not logic.running
    assert scene_state(logic.scene) == before
    again = Recorder()
    logic.segment(volumes, tiny_model, again)
    logic.wait(timeout=240)
    assert again.last()[0] == "finished"


def test_a_crashed_worker_is_reported_and_the_scene_is_unchanged(logic, tiny_model, case_dir):
    volumes = {m: logic.load_case_folder(case_dir)[m] for m in MODALITIES}
    before = scene_state(logic.scene)
    recorder = Recorder()
    params = {"model": str(tiny_model), "case": str(case_dir), "pause_at": "running the model"}
    logic.start("segment_paused", params, recorder, on_result=lambda data: pytest.fail("no result expected"))
    deadline = time.monotonic() + 120
    while not any(e == ("log", "paused") for e in recorder.events) and time.monotonic() < deadline:
        logic.poll()
        time.sleep(0.05)
    os.kill(logic.worker.pid, 9)
    logic.wait(timeout=WAIT_S)
    kind, message = recorder.last()
    assert kind == "failed" and "killed by SIGKILL while running 'segment_paused'" in message
    assert scene_state(logic.scene) == before
    assert volumes["t1n"].GetScene() is logic.scene


def test_a_result_that_fails_to_import_adds_nothing(logic, tiny_model, case_dir):
    volumes = {m: logic.load_case_folder(case_dir)[m] for m in MODALITIES}
    before = scene_state(logic.scene)

    def half_import(data):
        from MedSegLensLib.data import read_case

        labels = read_volume(data["segmentation"], kind="label")
        scene_api.add_brats_segmentation(logic.scene, labels.array, labels.grid, volumes["t1n"], "half")
        case = read_case(case_dir)
        case.case_id = "another patient"  # new patient and study items in the subject hierarchy
        scene_api.add_case_volumes(logic.scene, case)
        raise ValueError("the scene ran out of room")

    recorder = Recorder()
    logic.start("segment", {"model": str(tiny_model), "case": str(case_dir)}, recorder, half_import)
    logic.wait(timeout=240)
    assert recorder.last() == ("failed", "ValueError: the scene ran out of room")
    assert scene_state(logic.scene) == before


def test_bad_requests_are_refused_before_anything_runs(logic, tiny_model, case_dir, tmp_path):
    volumes = {m: logic.load_case_folder(case_dir)[m] for m in MODALITIES}
    with pytest.raises(ParameterError, match="select a volume for t2f"):
        logic.segment({**volumes, "t2f": None}, tiny_model)
    with pytest.raises(ParameterError, match="model folder does not exist"):
        logic.segment(volumes, tmp_path / "nowhere")
    logic.start("count", {"steps": 3, "delay": 0.5}, Recorder(), on_result=lambda data: None)
    with pytest.raises(ParameterError, match="'count' is still running"):
        logic.segment(volumes, tiny_model)
    logic.cancel()
    assert not logic.running


def test_a_bad_case_folder_adds_nothing(logic, tmp_path):
    before = scene_state(logic.scene)
    case_dir = write_case(tmp_path, np.random.default_rng(2), case_id="broken", with_labels=True)
    seg = case_dir / "broken-seg.nii.gz"
    seg.write_bytes(seg.read_bytes()[:100])  # truncated
    from MedSegLensLib.errors import InputError

    with pytest.raises(InputError, match="broken-seg.nii.gz"):
        logic.load_case_folder(case_dir)
    assert scene_state(logic.scene) == before


@pytest.fixture
def widget(monkeypatch):
    instance = open_widget(monkeypatch)
    yield instance
    instance.cleanup()


def test_the_widget_runs_a_job_and_its_apply_button_cancels(widget, tiny_model, case_dir):
    ui = widget.ui
    ui.caseFolderButton.directory = str(case_dir)
    widget.onLoadCaseFolder()
    state = widget._parameterNode
    assert state.t2f.GetName() == "case-001-t2f" and state.referenceSegmentation is not None
    state.modelFolder = tiny_model

    widget.onApplyButton()
    assert ui.applyButton.text == "Cancel" and widget.timer.isActive()
    assert not ui.inputsCollapsibleButton.enabled
    run_timer_until_idle(widget)
    assert ui.applyButton.text == "Apply" and ui.inputsCollapsibleButton.enabled
    assert ui.progressBar.value == 100 and not widget.dialogs.errors
    assert ui.outputSegmentationLabel.text == "case-001-t1n segmentation"
    assert widget.scene.GetFirstNodeByName("case-001-t1n segmentation").IsA("vtkMRMLSegmentationNode")

    before = scene_state(widget.scene)
    widget.onApplyButton()
    widget.onApplyButton()  # the same button, now "Cancel"
    assert ui.applyButton.text == "Apply" and ui.progressBar.value == 0
    assert ui.logTextEdit.lines[-1] == "Cancelled; the scene is unchanged."
    assert scene_state(widget.scene) == before


def test_the_widget_asks_before_installing_requirements(widget, tiny_model, monkeypatch):
    from MedSegLensLib.worker import requirements

    monkeypatch.setattr(requirements, "read_requirements", lambda path=None: [("medseglens-absent-package", "1.0")])
    widget._parameterNode.modelFolder = tiny_model
    widget.onApplyButton()
    assert len(widget.dialogs.questions) == 1 and "medseglens-absent-package>=1.0" in widget.dialogs.questions[0]
    assert widget.dialogs.pip_installs == [] and widget.core is None, "declined: nothing installed, nothing run"
    widget.dialogs.confirm = True
    widget.onApplyButton()
    assert widget.dialogs.pip_installs == ["medseglens-absent-package>=1.0"]
    assert widget.core is None, "still missing after the install: nothing runs"
