"""The Triage section's glue: the loaded case's line in a triage worklist, and its top latents' overlays.

A mixin of the module's widget (`MedSegLens/MedSegLens.py`); what is shown comes from `triage_view` (no Qt).
"""

from .section_latents import fill_table
from .triage_view import TriageSummary, loaded_case_id


class TriageSection:
    """Risk, rank, reference failure and top latents of the loaded case; a click shows the latent's overlay."""

    def updateTriage(self):
        """The loaded case's line in the chosen worklist (risk, rank, top latents), or one line saying why not."""
        state = self._parameterNode
        if self.core is None or state is None:  # reading a worklist needs the first-use installs, like Load
            summary = TriageSummary("Load or Apply a case to see its line in a worklist.")
        else:
            summary = self.triage.summary(state.triageFolder, loaded_case_id(self.chosenVolumes().values()))
        self.ui.triageStatusLabel.setText(summary.status)
        self.ui.triageRiskValueLabel.setText(summary.risk)
        self.ui.triageRankValueLabel.setText(summary.rank)
        self.ui.triageFailureValueLabel.setText(summary.failure)
        fill_table(self.ui.triageLatentTable, summary.latents)

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
