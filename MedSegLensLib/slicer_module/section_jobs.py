"""The Run section's glue: a job's callbacks, the timer that polls the worker, the progress bar and the log.

A mixin of the module's widget (`MedSegLens/MedSegLens.py`): its methods use the widget's `ui`, `core` and `timer`.
"""

import slicer


class JobsSection:
    """Progress, log and errors of the worker's jobs; the timer runs while a job runs."""

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
