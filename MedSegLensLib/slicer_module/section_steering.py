"""The Steering section's glue: one strength slider per steered latent, previews, Accept and Export.

A mixin of the module's widget (`MedSegLens/MedSegLens.py`); the request and the preview node are
`steering.SteeringRequest` / `steering.SteeringPreview`, driven through the widget's `core`.
"""

import slicer


class SteeringSection:
    """Steered latents and their sliders, the preview requests they make, Accept and Export."""

    def applySteeringSettings(self, state):
        """Mode, region and preview switch from the parameter node: sliders follow the mode, a new preview follows."""
        region = state.steeringRegionSegmentation
        steering = (
            state.steeringMode,
            state.steeringRegion,
            state.steeringMarginMm,
            region.GetID() if region is not None else None,
            state.previewEnabled,
        )
        if steering == self._applied.get("steering"):
            return
        if state.steeringMode != self._applied.get("mode"):
            for slider in self.steeringSliders.values():
                self.configureStrengthSlider(slider)
            self._applied["mode"] = state.steeringMode
        self._applied["steering"] = steering
        self.analysis.preview.set_visible(state.previewEnabled)
        self.requestPreview()

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
        import qt

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
        from .steering import SteeringRequest

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
        from .steering import dice_summary

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
