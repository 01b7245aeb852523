"""The Latent features section's glue: the latent table, the clicked latent's overlay, its threshold and legend.

A mixin of the module's widget (`MedSegLens/MedSegLens.py`); the overlay itself is `overlay.LatentOverlay`, driven
through the widget's `core` (`logic.ModuleLogic`). `fill_table` is shared with the Triage section.
"""

import slicer


def fill_table(table, rows) -> None:
    """Show rows of cell texts in a QTableWidget (as many rows as given, one item per cell)."""
    import qt

    table.setRowCount(len(rows))
    for index, row in enumerate(rows):
        for column, text in enumerate(row):
            table.setItem(index, column, qt.QTableWidgetItem(text))


class LatentsSection:
    """The latent table (sort, filter, click to overlay) and the overlay's style, threshold and legend."""

    def fillLatentTable(self):
        """Show the logic's latent rows (its sort order and filter) in the table."""
        rows = self.analysis.table.view() if self.analysis is not None else []
        fill_table(self.ui.latentTable, [row.cells() for row in rows])

    def applyOverlayStyle(self, state):
        """The overlay style chosen in the parameter node (volume or labelmap), once it differs from the shown one."""
        try:
            if state.overlayStyle != self._applied.get("style", "volume"):
                node = self.core.set_overlay_style(state.overlayStyle)
                if node is not None:
                    self.onOverlayShown(node)
            self._applied["style"] = state.overlayStyle
        except Exception as exc:
            self.onInteractiveFailed(str(exc))

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
        from ..scene import show_in_slice_views

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
