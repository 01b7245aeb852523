"""The Case section's glue: the four chosen volumes, Load (a BraTS case folder) and the views' background.

A mixin of the module's widget (`MedSegLens/MedSegLens.py`); loading itself is `logic.ModuleLogic.load_case_folder`.
"""

import slicer

MODALITY_PARAMETERS = ("t1n", "t1c", "t2w", "t2f")  # the parameter node's volume fields, in the model's order


class CaseSection:
    """The case's volumes in the parameter node, and Load."""

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

    def chosenVolumes(self):
        """The four modality volumes chosen in the parameter node (None where none is chosen)."""
        return {modality: getattr(self._parameterNode, modality) for modality in MODALITY_PARAMETERS}

    def showBackground(self):
        """The T1c (else the first chosen) volume behind everything, views fitted: overlays need a background."""
        state = self._parameterNode
        background = state.t1c or next((v for v in self.chosenVolumes().values() if v is not None), None)
        if background is not None:
            slicer.util.setSliceViewerLayers(background=background, fit=True)
