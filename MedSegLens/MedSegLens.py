"""MedSegLens: a 3D Slicer module that opens up a brain-tumour segmentation network.

The widget is thin: the work happens in `MedSegLensLib` (importable without Qt)
and, for anything heavy, in a background worker process started with
PythonSlicer. The widget reads the worker's messages with a QTimer, shows a
determinate progress bar and a log, and its Apply button turns into Cancel.
"""

import shutil
import sys
import time
from pathlib import Path

import qt
import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.util import VTKObservationMixin


def _make_library_importable():
    """From a source checkout (--additional-module-paths) the library sits beside this folder."""
    here = Path(__file__).resolve().parent
    for folder in (here, here.parent):
        if (folder / "MedSegLensLib" / "__init__.py").is_file():
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
            return


_make_library_importable()

MODALITY_SELECTORS = {"t1n": "t1nSelector", "t1c": "t1cSelector", "t2w": "t2wSelector", "t2f": "t2fSelector"}


class MedSegLens(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MedSegLens"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["MedSegLens contributors"]
        self.parent.helpText = (
            "Run a brain-tumour segmentation network on a case (T1, T1c, T2, FLAIR), see which sparse-autoencoder "
            "latent features fire where, steer them to correct the segmentation, and accept the result as a new "
            "segmentation. Heavy work runs in a background process; Cancel stops it and leaves the scene as it was."
        )
        self.parent.acknowledgementText = (
            "Method after Med-SegLens (Ahmed, Mohammed, Asilian Bidgoli, 2026). Background processing follows "
            "SlicerMONAIAuto3DSeg; testable logic follows SlicerNNUnet."
        )


@parameterNodeWrapper
class MedSegLensParameterNode:
    t1n: slicer.vtkMRMLScalarVolumeNode
    t1c: slicer.vtkMRMLScalarVolumeNode
    t2w: slicer.vtkMRMLScalarVolumeNode
    t2f: slicer.vtkMRMLScalarVolumeNode
    referenceSegmentation: slicer.vtkMRMLSegmentationNode
    modelFolder: Path
    saeFolder: Path
    latentThreshold: float = 0.5
    steeringStrength: float = 1.0


class MedSegLensWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    TIMER_INTERVAL_MS = 100

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.timer = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedSegLens.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = MedSegLensLogic()
        self.timer = qt.QTimer()
        self.timer.setInterval(self.TIMER_INTERVAL_MS)
        self.timer.connect("timeout()", self.onTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.loadCaseButton.connect("clicked(bool)", self.onLoadCaseFolder)
        self.ui.latentFilterLineEdit.connect("textChanged(QString)", self.onLatentFilterChanged)
        self.ui.progressBar.setRange(0, 100)
        self.ui.progressBar.setValue(0)
        self.initializeParameterNode()
        self.updateGUIFromState()

    def cleanup(self):
        if self.timer is not None:
            self.timer.stop()
        if self.logic is not None:
            self.logic.shutdown()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onReload(self):
        """Reload the library too (Python 3.12 has no `imp`; importlib.reload does it)."""
        if self.logic is not None:
            self.logic.shutdown()
        from MedSegLensLib.slicer_logic import reload_library

        reload_library()
        ScriptedLoadableModuleWidget.onReload(self)

    def onSceneStartClose(self, caller, event):
        if self.logic is not None and self.logic.running:
            self.logic.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    # -- running ---------------------------------------------------------------------

    def onApplyButton(self):
        """Apply starts the segmentation; while it runs the same button cancels it."""
        if self.logic.running:
            self.appendLog("Cancelling...")
            self.logic.cancel()
            self.updateGUIFromState()
            return
        if not self.logic.ensureRequirements():
            return
        state = self._parameterNode
        volumes = {modality: getattr(state, modality) for modality in MODALITY_SELECTORS}
        self.ui.logTextEdit.clear()
        self.ui.progressBar.setValue(0)
        try:
            self.logic.segment(volumes, state.modelFolder, self.makeCallbacks())
        except Exception as exc:
            slicer.util.errorDisplay(str(exc))
            return
        self.timer.start()
        self.updateGUIFromState()

    def makeCallbacks(self):
        from MedSegLensLib.slicer_logic import JobCallbacks

        return JobCallbacks(
            progress=self.onProgress,
            log=self.appendLog,
            finished=self.onFinished,
            failed=self.onFailed,
            cancelled=self.onCancelled,
        )

    def onTimer(self):
        self.logic.poll()
        if not self.logic.running:
            self.timer.stop()
            self.updateGUIFromState()

    def onProgress(self, fraction, message):
        self.ui.progressBar.setValue(int(round(100 * fraction)))
        self.ui.progressBar.setFormat(f"{message} (%p%)" if message else "%p%")

    def appendLog(self, text):
        self.ui.logTextEdit.appendPlainText(text)

    def onFinished(self, node):
        self.appendLog(f"Created {node.GetName()}")
        self.ui.progressBar.setValue(100)
        self.ui.outputSegmentationLabel.setText(node.GetName())

    def onFailed(self, message):
        self.appendLog(f"Error: {message}")
        slicer.util.errorDisplay(message, windowTitle="MedSegLens")

    def onCancelled(self):
        self.appendLog("Cancelled; the scene is unchanged.")
        self.ui.progressBar.setValue(0)

    def updateGUIFromState(self):
        running = self.logic is not None and self.logic.running
        self.ui.applyButton.text = "Cancel" if running else "Apply"
        self.ui.applyButton.toolTip = "Stop the background job" if running else "Segment the case with the model"
        self.ui.inputsCollapsibleButton.enabled = not running
        self.ui.modelCollapsibleButton.enabled = not running

    # -- inputs and latents ------------------------------------------------------------

    def onLoadCaseFolder(self):
        folder = self.ui.caseFolderButton.directory
        try:
            volumes = self.logic.loadCaseFolder(folder)
        except Exception as exc:
            slicer.util.errorDisplay(str(exc))
            return
        for role, node in volumes.items():
            setattr(self._parameterNode, "referenceSegmentation" if role == "reference" else role, node)

    def onLatentFilterChanged(self, text):
        """Hide the latent table's rows whose text does not contain the filter."""
        table = self.ui.latentTable
        needle = text.strip().lower()
        for row in range(table.rowCount):
            cells = [table.item(row, column) for column in range(table.columnCount)]
            haystack = " ".join(cell.text().lower() for cell in cells if cell is not None)
            table.setRowHidden(row, bool(needle) and needle not in haystack)


class MedSegLensLogic(ScriptedLoadableModuleLogic):
    """Slicer-side wiring of `MedSegLensLib.slicer_logic.ModuleLogic` (worker launched with PythonSlicer)."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._core = None

    def getParameterNode(self):
        return MedSegLensParameterNode(super().getParameterNode())

    @property
    def core(self):
        if self._core is None:
            from MedSegLensLib.slicer_logic import ModuleLogic
            from MedSegLensLib.worker import WorkerProcess

            python = shutil.which("PythonSlicer") or sys.executable
            worker = WorkerProcess(python, env=slicer.util.startupEnvironment())
            self._core = ModuleLogic(slicer.mrmlScene, worker)
        return self._core

    @property
    def running(self):
        return self._core is not None and self._core.running

    def ensureRequirements(self):
        """Install missing Python packages on first use, only after the user agrees."""
        from MedSegLensLib.worker.requirements import missing_requirements, read_requirements, requirements_file

        missing = missing_requirements(read_requirements())
        if not missing:
            return True
        try:
            import slicer.pydeps as pydeps  # Slicer >= 5.11
        except ImportError:
            pydeps = getattr(slicer, "packaging", None)
        if pydeps is not None and hasattr(pydeps, "pip_ensure"):
            pydeps.pip_ensure(pydeps.load_requirements(str(requirements_file())), requester="MedSegLens")
        else:
            question = "MedSegLens needs these Python packages:\n\n" + "\n".join(missing) + "\n\nInstall them now?"
            if not slicer.util.confirmOkCancelDisplay(question, windowTitle="MedSegLens"):
                return False
            slicer.util.pip_install(" ".join(missing))
        return not missing_requirements(read_requirements())

    def segment(self, volumes, modelFolder, callbacks):
        return self.core.segment(volumes, modelFolder, callbacks)

    def loadCaseFolder(self, folder):
        return self.core.load_case_folder(folder)

    def poll(self):
        if self._core is not None:
            self._core.poll()

    def cancel(self):
        if self._core is not None:
            self._core.cancel()

    def shutdown(self):
        if self._core is not None:
            self._core.shutdown()
            self._core = None


class MedSegLensTest(ScriptedLoadableModuleTest):
    """Runs the flow inside desktop Slicer on a tiny, untrained model (CTest: py_MedSegLens)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_segment_creates_a_new_segmentation()
        self.setUp()
        self.test_cancel_leaves_the_scene_unchanged()

    def _tinyCase(self):
        import numpy as np

        rng = np.random.default_rng(0)
        volumes = {}
        for modality in MODALITY_SELECTORS:
            array = rng.normal(size=(24, 24, 24)).astype("float32")  # [k, j, i]
            node = slicer.util.addVolumeFromArray(array, ijkToRAS=np.diag([2.0, 2.0, 2.0, 1.0]), name=f"tiny-{modality}")
            volumes[modality] = node
        return volumes

    def _tinyModel(self):
        import torch

        from MedSegLensLib.models.config import tiny_config
        from MedSegLensLib.models.registry import build_network
        from MedSegLensLib.models.storage import save_model

        torch.manual_seed(0)
        config = tiny_config("unet")
        folder = Path(slicer.util.tempDirectory()) / "tiny-unet"
        save_model(build_network(config), config, folder, overwrite=True)
        return folder

    def _waitUntilIdle(self, logic, timeout=300):
        deadline = time.monotonic() + timeout
        while logic.running and time.monotonic() < deadline:
            slicer.app.processEvents()
            logic.poll()
            time.sleep(0.05)
        self.assertFalse(logic.running, "the job did not finish in time")

    def test_segment_creates_a_new_segmentation(self):
        from MedSegLensLib.slicer_logic import JobCallbacks

        self.delayDisplay("Segmenting a tiny case with a tiny model in the background")
        logic = MedSegLensLogic()
        volumes = self._tinyCase()
        events = []
        callbacks = JobCallbacks(
            progress=lambda f, m: events.append(("progress", f)),
            finished=lambda node: events.append(("finished", node)),
            failed=lambda message: events.append(("failed", message)),
        )
        logic.segment(volumes, self._tinyModel(), callbacks)
        self._waitUntilIdle(logic)
        logic.shutdown()
        self.assertEqual(events[-1][0], "finished", events[-1])
        fractions = [f for kind, f in events if kind == "progress"]
        self.assertEqual(fractions, sorted(fractions))
        node = events[-1][1]
        self.assertTrue(node.IsA("vtkMRMLSegmentationNode"))
        self.delayDisplay("Test passed")

    def test_cancel_leaves_the_scene_unchanged(self):
        from MedSegLensLib.slicer_logic import JobCallbacks, node_ids

        self.delayDisplay("Cancelling a running job")
        logic = MedSegLensLogic()
        volumes = self._tinyCase()
        before = node_ids(slicer.mrmlScene)
        cancelled = []
        logic.segment(volumes, self._tinyModel(), JobCallbacks(cancelled=lambda: cancelled.append(True)))
        logic.cancel()
        self._waitUntilIdle(logic)
        logic.shutdown()
        self.assertEqual(cancelled, [True])
        self.assertEqual(node_ids(slicer.mrmlScene), before)
        self.delayDisplay("Test passed")
