"""MedSegLens: a 3D Slicer module that opens up a brain-tumour segmentation network.

The widget is thin: the work happens in `MedSegLensLib` (importable without Qt)
and, for anything heavy, in a background worker process started with
PythonSlicer. The widget reads the worker's messages with a QTimer, shows a
determinate progress bar and a log, and its Apply button turns into Cancel.
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
from MedSegLensLib.slicer_module.self_test import SelfTestSteps  # noqa: E402
from MedSegLensLib.slicer_module.steering import DEFAULT_REGION  # noqa: E402
from MedSegLensLib.slicer_module.triage_view import TriageLookup, TriageSummary, loaded_case_id  # noqa: E402
from MedSegLensLib.steering_contract import (  # noqa: E402
    DEFAULT_MARGIN_MM,
    MAX_MARGIN_MM,
    MIN_MARGIN_MM,
    MODES,
    REGION_KINDS,
)

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


class MedSegLensWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Qt glue only: every action goes to `self.core` (`MedSegLensLib.slicer_module.logic.ModuleLogic`)."""

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
        self.ui.addSteeringLatentButton.connect("clicked(bool)", self.onAddSteeringLatent)
        self.ui.removeSteeringLatentButton.connect("clicked(bool)", self.onRemoveSteeringLatent)
        self.ui.previewButton.connect("clicked(bool)", lambda checked=False: self.requestPreview(force=True))
        self.ui.acceptButton.connect("clicked(bool)", self.onAcceptButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.triageLatentTable.connect("cellClicked(int,int)", self.onTriageLatentClicked)
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

    # -- running ---------------------------------------------------------------------

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
        volumes = {modality: getattr(state, modality) for modality in MODALITY_SELECTORS}
        self.ui.logTextEdit.clear()
        self.ui.progressBar.setValue(0)
        try:
            if state.saeFolder and str(state.saeFolder) not in ("", "."):
                self.core.analyse(
                    volumes,
                    state.modelFolder,
                    state.saeFolder,
                    self.makeCallbacks(),
                    reference=state.referenceSegmentation,
                )
            else:
                self.core.segment(volumes, state.modelFolder, self.makeCallbacks())
        except Exception as exc:
            slicer.util.errorDisplay(str(exc))
            return
        self.startTimer()

    def makeCallbacks(self, finished=None, failed=None):
        """Callbacks of a job: the progress bar and the log, then `finished(node)` (the Apply result by default)."""
        from MedSegLensLib.slicer_module.logic import JobCallbacks

        return JobCallbacks(
            progress=self.onProgress,
            log=self.appendLog,
            finished=finished or self.onFinished,
            failed=failed or (self.onFailed if finished is None else self.onInteractiveFailed),
            cancelled=self.onCancelled,
        )

    def startTimer(self):
        if not self.timer.isActive():
            self.timer.start()
        self.updateGUIFromState()

    def onTimer(self):
        self.core.poll()
        if not self.core.running:
            self.timer.stop()
        self.updateGUIFromState()

    def onProgress(self, fraction, message):
        self.ui.progressBar.setValue(int(round(100 * fraction)))
        self.ui.progressBar.setFormat(f"{message} (%p%)" if message else "%p%")

    def onInstallProgress(self, done, total, requirement):
        """Installing a package blocks Slicer for a while: say which, and move the bar, before each one."""
        self.ui.progressBar.setValue(int(round(100 * done / max(total, 1))))
        self.appendLog(f"Installing {requirement} ({done + 1} of {total})..." if requirement else "Installed.")
        slicer.app.processEvents()

    def appendLog(self, text):
        self.ui.logTextEdit.appendPlainText(text)

    def onFinished(self, node):
        self.showBackground()
        self.appendLog(f"Created {node.GetName()}")
        self.ui.progressBar.setValue(100)
        self.ui.outputSegmentationLabel.setText(node.GetName())
        self.outputNode = node
        self.clearSteeringLatents()
        self._applied = {}
        self.fillLatentTable()
        self.updateOverlayControls()
        self.onParameterNodeModified()

    def onFailed(self, message):
        self.appendLog(f"Error: {message}")
        slicer.util.errorDisplay(message, windowTitle="MedSegLens")

    def onInteractiveFailed(self, message):
        """A latent map or preview failed: say so without a modal dialog (the user may be dragging a slider)."""
        self.appendLog(f"Error: {message}")
        self.ui.steeringDiceValueLabel.setText(f"Error: {message}")

    def onCancelled(self):
        self.appendLog("Cancelled; the scene is unchanged.")
        self.ui.progressBar.setValue(0)

    def updateGUIFromState(self):
        core, analysis = self.core, self.analysis
        applying = core is not None and core.pending(None)
        self.ui.applyButton.text = "Cancel" if applying else "Apply"
        self.ui.applyButton.toolTip = "Stop the background job" if applying else "Segment the case with the model"
        self.ui.inputsCollapsibleButton.enabled = not applying
        self.ui.modelCollapsibleButton.enabled = not applying
        self.ui.steeringCollapsibleButton.enabled = analysis is not None and not applying
        self.ui.addSteeringLatentButton.enabled = analysis is not None and self.selectedLatent is not None
        previewed = analysis is not None and analysis.preview.outcome is not None
        self.ui.acceptButton.enabled = previewed and not core.pending("steer")
        self.ui.exportButton.enabled = self.outputNode is not None

    # -- inputs and latents ------------------------------------------------------------

    def onLoadCaseFolder(self):
        if not self.logic.ensureCore(self.onInstallProgress):
            return
        try:
            volumes = self.core.load_case_folder(self.ui.caseFolderButton.directory)
        except Exception as exc:
            slicer.util.errorDisplay(str(exc))
            return
        for role, node in volumes.items():
            setattr(self._parameterNode, "referenceSegmentation" if role == "reference" else role, node)
        self.showBackground()

    def showBackground(self):
        """The T1c (else the first chosen) volume behind everything, views fitted: overlays need a background."""
        state = self._parameterNode
        background = state.t1c or next((getattr(state, m) for m in MODALITY_SELECTORS if getattr(state, m)), None)
        if background is not None:
            slicer.util.setSliceViewerLayers(background=background, fit=True)

    def fillLatentTable(self):
        """Show the logic's latent rows (its sort order and filter) in the table."""
        rows = self.analysis.table.view() if self.analysis is not None else []
        table = self.ui.latentTable
        table.setRowCount(len(rows))
        for index, row in enumerate(rows):
            for column, text in enumerate(row.cells()):
                table.setItem(index, column, qt.QTableWidgetItem(text))

    def onLatentFilterChanged(self, text):
        if self.analysis is not None:
            self.analysis.table.filter_text = text
            self.fillLatentTable()

    def onLatentHeaderClicked(self, column):
        if self.analysis is not None:
            self.analysis.table.sort_by(column)
            self.fillLatentTable()

    def onLatentClicked(self, row, column):
        """Overlay the clicked latent's map (computed on demand in the worker)."""
        self.showLatent(int(self.ui.latentTable.item(row, 0).text()))

    def showLatent(self, latent, failed=None):
        """Select `latent` and overlay its map; a problem goes to `failed(message)` (the log and steering line)."""
        failed = failed or self.onInteractiveFailed
        self.selectedLatent = latent
        try:
            self.core.show_latent(latent, self.makeCallbacks(finished=self.onOverlayShown, failed=failed))
        except Exception as exc:
            failed(str(exc))
            return
        self.startTimer()

    def onOverlayShown(self, node):
        from MedSegLensLib.scene import show_in_slice_views

        if node.IsA("vtkMRMLLabelMapVolumeNode"):
            show_in_slice_views(slicer.mrmlScene, label=node)
        else:
            show_in_slice_views(slicer.mrmlScene, foreground=node, foreground_opacity=0.6)
        self.updateOverlayControls()

    def updateOverlayControls(self):
        """Threshold slider in the latent's activation units (0 to its peak, at the current threshold) and legend."""
        overlay = self.analysis.overlay if self.analysis is not None else None
        slider = self.ui.latentThresholdSlider
        if overlay is None or overlay.focus is None:
            self.ui.latentLegendLabel.setText("")
            return
        peak = max(overlay.peak, 1e-6)
        self._updatingThreshold = True
        try:
            slider.minimum, slider.maximum = 0.0, peak
            slider.singleStep = peak / 100.0
            slider.decimals = 3
            slider.value = overlay.threshold
        finally:
            self._updatingThreshold = False
        self.ui.latentLegendLabel.setText(overlay.legend())

    def onLatentThresholdChanged(self, value):
        """The user moved the threshold (activation units): the overlay is transparent below it."""
        if self._updatingThreshold or self.analysis is None or self.analysis.overlay.focus is None:
            return
        try:
            self.core.set_overlay_threshold(float(value))
        except Exception as exc:
            self.onInteractiveFailed(str(exc))
            return
        self.ui.latentLegendLabel.setText(self.analysis.overlay.legend())

    def onParameterNodeModified(self, caller=None, event=None):
        """Apply overlay and steering settings that changed (the parameter node holds what the GUI shows)."""
        analysis, state = self.analysis, self._parameterNode
        if state is not None:
            self.updateTriage()
        if analysis is None or state is None:
            return
        try:
            if state.overlayStyle != self._applied.get("style", "volume"):
                node = self.core.set_overlay_style(state.overlayStyle)
                if node is not None:
                    self.onOverlayShown(node)
            self._applied["style"] = state.overlayStyle
        except Exception as exc:
            self.onInteractiveFailed(str(exc))
        region = state.steeringRegionSegmentation
        steering = (
            state.steeringMode,
            state.steeringRegion,
            state.steeringMarginMm,
            region.GetID() if region is not None else None,
            state.previewEnabled,
        )
        if steering != self._applied.get("steering"):
            if state.steeringMode != self._applied.get("mode"):
                for slider in self.steeringSliders.values():
                    self.configureStrengthSlider(slider)
                self._applied["mode"] = state.steeringMode
            self._applied["steering"] = steering
            analysis.preview.set_visible(state.previewEnabled)
            self.requestPreview()

    # -- triage ------------------------------------------------------------------------

    def updateTriage(self):
        """The loaded case's line in the chosen worklist (risk, rank, top latents), or one line saying why not."""
        state = self._parameterNode
        if self.core is None or state is None:  # reading a worklist needs the first-use installs, like Load
            summary = TriageSummary("Load or Apply a case to see its line in a worklist.")
        else:
            volumes = [getattr(state, modality) for modality in MODALITY_SELECTORS]
            summary = self.triage.summary(state.triageFolder, loaded_case_id(volumes))
        self.ui.triageStatusLabel.setText(summary.status)
        self.ui.triageRiskValueLabel.setText(summary.risk)
        self.ui.triageRankValueLabel.setText(summary.rank)
        self.ui.triageFailureValueLabel.setText(summary.failure)
        table = self.ui.triageLatentTable
        table.setRowCount(len(summary.latents))
        for index, row in enumerate(summary.latents):
            for column, text in enumerate(row):
                table.setItem(index, column, qt.QTableWidgetItem(text))

    def onTriageLatentClicked(self, row, column):
        """Overlay the clicked top latent's map, through the same path as a click in the latent table."""
        analysis = self.analysis
        problem = self.triage.latent_problem(
            self._parameterNode.triageFolder, analysis.sae if analysis is not None else None
        )
        if problem:
            self.ui.triageStatusLabel.setText(problem)
            return
        self.ui.triageStatusLabel.setText("")
        self.showLatent(int(self.ui.triageLatentTable.item(row, 0).text()), failed=self.ui.triageStatusLabel.setText)

    # -- steering ----------------------------------------------------------------------

    def configureStrengthSlider(self, slider):
        """Range and neutral value of the current mode, from the steering contract the worker reported.

        The strength is in the latent's own units, shown as a number in the slider's box: additive and clamp
        strengths count typical activations of the latent (a step is a tenth of one), multiplicative ones
        scale its code.
        """
        options, mode = self.analysis.steering, self._parameterNode.steeringMode
        slider.minimum, slider.maximum = options["strength_ranges"][mode]
        slider.singleStep = 0.1
        slider.decimals = 1
        slider.suffix = " × code" if mode == "multiplicative" else " × typical"
        slider.value = options["neutral"].get(mode, 1.0)

    def onAddSteeringLatent(self):
        import ctk

        latent = self.selectedLatent
        if latent is None or latent in self.steeringSliders:
            return
        table = self.ui.steeringLatentTable
        row = table.rowCount
        table.setRowCount(row + 1)
        table.setItem(row, 0, qt.QTableWidgetItem(str(latent)))
        slider = ctk.ctkSliderWidget()
        self.configureStrengthSlider(slider)
        slider.connect("valueChanged(double)", lambda value: self.requestPreview())
        table.setCellWidget(row, 1, slider)
        self.steeringSliders[latent] = slider
        self.requestPreview()

    def onRemoveSteeringLatent(self):
        table = self.ui.steeringLatentTable
        row = table.currentRow()
        if row < 0 or table.item(row, 0) is None:
            return
        self.steeringSliders.pop(int(table.item(row, 0).text()), None)
        table.removeRow(row)
        self.requestPreview()

    def clearSteeringLatents(self):
        self.steeringSliders = {}
        self.ui.steeringLatentTable.setRowCount(0)
        self.ui.steeringDiceValueLabel.setText("-")

    def requestPreview(self, force=False):
        """Ask the worker for a preview of the current steering (a newer request supersedes a waiting one)."""
        from MedSegLensLib.slicer_module.steering import SteeringRequest

        state = self._parameterNode
        if self.analysis is None or not self.steeringSliders or not (force or state.previewEnabled):
            return
        try:
            request = SteeringRequest(
                tuple(self.steeringSliders),
                tuple(float(s.value) for s in self.steeringSliders.values()),
                state.steeringMode,
                state.steeringRegion,
                state.steeringMarginMm,
                state.steeringRegionSegmentation,
            )
            self.core.preview(request, self.makeCallbacks(finished=self.onPreviewShown))
        except Exception as exc:
            self.onInteractiveFailed(str(exc))
            return
        self.startTimer()

    def onPreviewShown(self, node):
        from MedSegLensLib.slicer_module.steering import dice_summary

        self.ui.steeringDiceValueLabel.setText(dice_summary(self.analysis.preview.outcome))

    def onAcceptButton(self):
        try:
            node = self.core.accept()
        except Exception as exc:
            slicer.util.errorDisplay(str(exc))
            return
        self.outputNode = node
        self.ui.outputSegmentationLabel.setText(node.GetName())
        self.appendLog(f"Accepted {node.GetName()} (a new segmentation with its provenance)")
        self.updateGUIFromState()

    def onExportButton(self):
        try:
            written = self.core.export_segmentation(self.outputNode, self.ui.exportPathLineEdit.currentPath)
        except Exception as exc:
            slicer.util.errorDisplay(str(exc))
            return
        self.appendLog(f"Exported {self.outputNode.GetName()} to {written}")


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
