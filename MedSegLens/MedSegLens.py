"""MedSegLens: a 3D Slicer module that opens up a brain-tumour segmentation network.

The module file is thin: Slicer's Module, Widget, Logic and Test classes. Each
panel section's Qt glue is a mixin in `MedSegLensLib/slicer_module/section_*.py`,
the work happens in `MedSegLensLib` (importable without Qt) and, for anything
heavy, in a background worker process started with PythonSlicer. The widget
reads the worker's messages with a QTimer, shows a determinate progress bar and
a log, and its Apply button turns into Cancel.
"""

import shutil
import sys
from pathlib import Path
from typing import Annotated

import qt
import slicer
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
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

from MedSegLensLib.slicer_module.compatibility import MINIMUM_SLICER_TEXT, unsupported_slicer  # noqa: E402
from MedSegLensLib.slicer_module.overlay import STYLES as OVERLAY_STYLES  # noqa: E402 - after the path is set
from MedSegLensLib.slicer_module.sections import PanelSections  # noqa: E402
from MedSegLensLib.slicer_module.self_test import SelfTestSteps  # noqa: E402
from MedSegLensLib.slicer_module.steering import DEFAULT_REGION  # noqa: E402
from MedSegLensLib.slicer_module.triage_view import TriageLookup  # noqa: E402
from MedSegLensLib.steering_contract import (  # noqa: E402
    DEFAULT_MARGIN_MM,
    MAX_MARGIN_MM,
    MIN_MARGIN_MM,
    MODES,
    REGION_KINDS,
)


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
            "segmentation. Heavy work runs in a background process; Cancel stops it and leaves the scene as it was. "
            f"Needs {MINIMUM_SLICER_TEXT} or newer and the PyTorch Utils extension."
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
    overlayStyle: Annotated[str, Choice(OVERLAY_STYLES)] = OVERLAY_STYLES[0]
    steeringMode: Annotated[str, Choice(MODES)] = MODES[0]
    steeringRegion: Annotated[str, Choice(REGION_KINDS)] = DEFAULT_REGION
    steeringMarginMm: Annotated[float, WithinRange(MIN_MARGIN_MM, MAX_MARGIN_MM)] = DEFAULT_MARGIN_MM
    steeringRegionSegmentation: slicer.vtkMRMLSegmentationNode
    previewEnabled: bool = True
    triageFolder: Path


class MedSegLensWidget(PanelSections, ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Qt glue only: every action goes to `self.core` (`MedSegLensLib.slicer_module.logic.ModuleLogic`).

    Set-up, the parameter node and Apply are here; each panel section's glue is a mixin in
    `MedSegLensLib/slicer_module/section_*.py` (Case, Run, Latent features, Triage, Steering).
    """

    TIMER_INTERVAL_MS = 100

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.timer = None
        self.steeringSliders = {}  # latent -> strength slider, in the order they were added
        self.selectedLatent = None
        self.outputNode = None  # the segmentation Export writes: the latest accepted, else the model's
        self._applied = {}  # overlay and steering settings last passed to the logic
        self._updatingThreshold = False  # the threshold slider is being set from the overlay, not by the user
        self.triage = TriageLookup()

    @property
    def core(self):
        """The GUI-free logic; None until the first Load Case or Apply has installed what it needs."""
        return self.logic.core if self.logic is not None else None

    @property
    def analysis(self):
        return self.core.analysis if self.core is not None else None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        problem = unsupported_slicer(slicer.app.majorVersion, slicer.app.minorVersion)
        if problem:
            self.layout.addWidget(qt.QLabel(problem))
            return
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
        self.ui.latentTable.connect("cellClicked(int,int)", self.onLatentClicked)
        self.ui.latentTable.horizontalHeader().connect("sectionClicked(int)", self.onLatentHeaderClicked)
        self.ui.latentThresholdSlider.connect("valueChanged(double)", self.onLatentThresholdChanged)
        self.ui.triageLatentTable.connect("cellClicked(int,int)", self.onTriageLatentClicked)
        self.ui.addSteeringLatentButton.connect("clicked(bool)", self.onAddSteeringLatent)
        self.ui.removeSteeringLatentButton.connect("clicked(bool)", self.onRemoveSteeringLatent)
        self.ui.previewButton.connect("clicked(bool)", lambda checked=False: self.requestPreview(force=True))
        self.ui.acceptButton.connect("clicked(bool)", self.onAcceptButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
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
        if self.logic is not None:  # None in an unsupported Slicer: the panel is only a message
            self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onReload(self):
        """Reload the library too (Python 3.12 has no `imp`; importlib.reload does it)."""
        if self.logic is not None:
            self.logic.shutdown()
        from MedSegLensLib.slicer_module.reloading import reload_library

        reload_library()
        ScriptedLoadableModuleWidget.onReload(self)

    def onSceneStartClose(self, caller, event):
        """The case's nodes are going: forget them, so nothing (Export, the table, sliders) points at a deleted node."""
        if self.core is not None:
            self.core.forget_case()
        self.setParameterNode(None)
        self.outputNode, self.selectedLatent, self._applied = None, None, {}
        self.clearSteeringLatents()
        self.fillLatentTable()
        self.updateOverlayControls()
        self.ui.outputSegmentationLabel.setText("(none yet)")
        self.ui.progressBar.setValue(0)
        self.updateGUIFromState()

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode):
        import vtk

        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(
                self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified
            )
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(
                self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified
            )
        self.updateTriage()

    # -- Apply, and settings from the parameter node --------------------------------------

    def onApplyButton(self):
        """Apply segments the case (and, with an SAE, lists its latents); while it runs the same button cancels."""
        if self.core is not None and self.core.running:
            self.appendLog("Cancelling...")
            self.core.cancel()
            self.updateGUIFromState()
            return
        if not self.logic.ensureCore(self.onInstallProgress):
            return
        state = self._parameterNode
        volumes = self.chosenVolumes()
        self.ui.logTextEdit.clear()
        self.ui.progressBar.setValue(0)
        try:
            if state.saeFolder and str(state.saeFolder) not in ("", "."):
                callbacks, reference = self.makeCallbacks(), state.referenceSegmentation
                self.core.analyse(volumes, state.modelFolder, state.saeFolder, callbacks, reference=reference)
            else:
                self.core.segment(volumes, state.modelFolder, self.makeCallbacks())
        except Exception as exc:
            slicer.util.errorDisplay(str(exc))
            return
        self.startTimer()

    def onParameterNodeModified(self, caller=None, event=None):
        """Apply overlay and steering settings that changed (the parameter node holds what the GUI shows)."""
        analysis, state = self.analysis, self._parameterNode
        if state is not None:
            self.updateTriage()
        if analysis is not None and state is not None:
            self.applyOverlayStyle(state)
            self.applySteeringSettings(state)


class MedSegLensLogic(ScriptedLoadableModuleLogic):
    """Makes the GUI-free logic on first use, after installing what it needs, with a PythonSlicer worker."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.core = None

    def getParameterNode(self):
        return MedSegLensParameterNode(super().getParameterNode())

    def ensureCore(self, progress):
        """torch through PyTorch Utils, the other packages with pip (each after asking), then the logic."""
        if self.core is None:
            from MedSegLensLib.slicer_module.requirements import ensure_requirements, slicer_installer

            if not ensure_requirements(slicer_installer(progress)):
                return False
            from MedSegLensLib.slicer_module.logic import ModuleLogic
            from MedSegLensLib.worker import WorkerProcess

            python = shutil.which("PythonSlicer") or sys.executable
            self.core = ModuleLogic(slicer.mrmlScene, WorkerProcess(python, env=slicer.util.startupEnvironment()))
        return True

    def shutdown(self):
        if self.core is not None:
            self.core.shutdown()
            self.core = None


class MedSegLensTest(SelfTestSteps, ScriptedLoadableModuleTest):
    """The in-Slicer self-test (CTest py_MedSegLens); its steps are in MedSegLensLib.slicer_module.self_test."""

    def makeLogic(self):
        return MedSegLensLogic()
