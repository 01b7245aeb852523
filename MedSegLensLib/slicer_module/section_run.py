"""The Run section's glue: a job's callbacks, the timer that polls the worker, the progress bar and the log.

A mixin of the module's widget (`MedSegLens/MedSegLens.py`): its methods use the widget's `ui`, `core` and `timer`.
"""

import slicer


class RunSection:
    """The result of Apply; progress, log and errors of every job; the panel while one runs (Apply becomes Cancel)."""

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

    def makeCallbacks(self, finished=None, failed=None):
        """Callbacks of a job: the progress bar and the log, then `finished(node)` (the Apply result by default)."""
        from .logic import JobCallbacks

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
