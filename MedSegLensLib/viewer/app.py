"""The viewer application: browser state on one side, `CaseDisplay` and the workspace on the other.

Every value that arrives from the browser is untrusted: a case id, an overlay name
or a modality is looked up in the workspace index, never used as a path. Errors a
user can cause are shown in the page and leave the displayed case as it was.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..data import MODALITIES
from ..errors import MedSegLensError, ParameterError
from ..fileio import sha256_file
from .accepted import accept_segmentation, timestamped_stem
from .display import MODALITY_LABELS, CaseDisplay
from .steering_panel import SteeringPanel
from .workspace import DICE_REGIONS, Workspace, WorkspaceCase

NO_SELECTION = "none"


def case_row(case: WorkspaceCase) -> dict:
    """One line of the case list: what a QA lead scans for."""
    dice = [f"{region} {case.dice[region]:.2f}" for region in DICE_REGIONS if case.dice.get(region) is not None]
    return {
        "case_id": case.case_id,
        "population": case.population,
        "dice": " · ".join(dice) if dice else "no reference Dice",
        "failure": case.failure,
    }


def overlay_rows(case: WorkspaceCase) -> list[dict]:
    return [
        {
            "name": overlay.name,
            "latent": "" if overlay.latent is None else overlay.latent,
            "category": overlay.category,
            "description": overlay.description,
            "specificity": "" if overlay.specificity is None else f"{overlay.specificity:.2f}",
        }
        for overlay in case.overlays
    ]


class ViewerApp:
    """Binds the trame state to the case display, the accepted-segmentation store and the panels."""

    def __init__(self, server, slicer_app, workspace: Workspace):
        self.server = server
        self.state = server.state
        self.workspace = workspace
        self.display = CaseDisplay(slicer_app, workspace)
        self.steering = SteeringPanel(server, workspace)
        self._initial_state()
        self.state.change("case_id")(self._on_case)
        self.state.change("modality")(self._on_modality)
        self.state.change("display_range")(self._on_display_range)
        self.state.change("seg_source")(self._on_segmentation)
        self.state.change("overlay_name")(self._on_overlay)
        self.state.change("overlay_threshold", "overlay_opacity")(self._on_overlay_style)
        server.controller.accept_segmentation = self.accept
        server.controller.reset_views = self.display.reset_views

    def _initial_state(self) -> None:
        s = self.state
        s.trame__title = "MedSegLens viewer"
        s.cases = [case_row(case) for case in self.workspace.cases]
        s.case_id = None
        s.case_title = "no case loaded"
        s.modalities = [{"value": m, "title": MODALITY_LABELS[m]} for m in MODALITIES]
        s.modality = MODALITIES[0]
        s.display_range = [0.0, 1.0]
        s.display_bounds = [0.0, 1.0]
        s.seg_sources = []
        s.seg_source = NO_SELECTION
        s.overlays = []
        s.overlay_name = NO_SELECTION
        s.overlay_threshold = self.display.overlay_threshold
        s.overlay_opacity = self.display.overlay_opacity
        s.message = ""
        s.message_error = False
        s.accepted = []

    def open_case(self, case_id: str) -> None:
        """Load a case (also used for the case given on the command line)."""
        self.state.case_id = case_id
        self._on_case(case_id)

    # -- state handlers -------------------------------------------------------------------

    def _on_case(self, case_id, **_):
        if not case_id or (self.display.case and self.display.case.case_id == case_id):
            return
        if not self._attempt(f"loading {case_id}", lambda: self._publish_case(self.display.load_case(str(case_id)))):
            self.state.case_id = self.display.case.case_id if self.display.case else None

    def _publish_case(self, case: WorkspaceCase) -> None:
        s = self.state
        s.case_title = f"{case.case_id} · {case.population}" + (" · FAILURE" if case.failure else "")
        s.seg_sources = self.display.segmentation_sources
        s.seg_source = self.display.segmentation_source or NO_SELECTION
        s.overlays = overlay_rows(case)
        s.overlay_name = NO_SELECTION
        s.accepted = []
        self._publish_range()
        self.steering.set_case(case)
        self._say(f"{case.case_id} loaded")

    def _publish_range(self) -> None:
        low, high = self.display.intensity_range()
        shown = self.display.display_range()
        span = max(high - low, 1e-6)
        self.state.display_bounds = [low - 0.5 * span, high + 0.5 * span]
        self.state.display_range = [float(shown[0]), float(shown[1])]

    def _on_modality(self, modality, **_):
        if self.display.case is not None and modality != self.display.modality:
            self._attempt("changing modality", lambda: (self.display.show_modality(str(modality)), self._publish_range()))

    def _on_display_range(self, display_range, **_):
        if self.display.case is None or not isinstance(display_range, (list, tuple)) or len(display_range) != 2:
            return
        self._attempt("setting window/level", lambda: self.display.set_display_range(float(display_range[0]), float(display_range[1])))

    def _on_segmentation(self, seg_source, **_):
        if self.display.case is not None:
            source = None if seg_source == NO_SELECTION else str(seg_source)
            self._attempt("changing segmentation", lambda: self.display.show_segmentation(source))

    def _on_overlay(self, overlay_name, **_):
        if self.display.case is not None:
            name = None if overlay_name == NO_SELECTION else str(overlay_name)
            self._attempt("showing overlay", lambda: self.display.show_overlay(name))

    def _on_overlay_style(self, overlay_threshold, overlay_opacity, **_):
        if self.display.case is not None:
            self._attempt(
                "styling overlay",
                lambda: self.display.set_overlay_style(threshold=float(overlay_threshold), opacity=float(overlay_opacity)),
            )

    # -- accept ---------------------------------------------------------------------------

    def accept(self) -> Path | None:
        """Save the shown segmentation as a new accepted segmentation with its provenance."""
        saved: list[Path] = []
        self._attempt("accepting", lambda: saved.append(self._accept()))
        return saved[0] if saved else None

    def _accept(self) -> Path:
        case = self.display.case
        if case is None:
            raise ParameterError("no case is loaded; pick a case first")
        source = self.display.segmentation_source or NO_SELECTION
        source_file = self.display.segmentation_file()
        provenance = {
            "source": source,
            "source_file": os.path.relpath(source_file, self.workspace.root.resolve()) if source_file else None,
            "source_sha256": sha256_file(source_file) if source_file else None,
            "model": self.workspace.default_model if source == "prediction" else None,
            "sae": None,
            "steering": self.steering.provenance(),
        }
        result = accept_segmentation(
            self.workspace, case.case_id, timestamped_stem(source), self.display.write_segmentation, provenance
        )
        relative = os.path.relpath(result.segmentation, self.workspace.root)
        self.state.accepted = [*self.state.accepted, relative]
        self._say(f"saved {relative}")
        return result.segmentation

    # -- feedback -------------------------------------------------------------------------

    def _attempt(self, what: str, action) -> bool:
        """Run `action`; a user error becomes a message in the page instead of an exception."""
        try:
            action()
        except MedSegLensError as exc:
            self._say(f"{what}: {exc}", error=True)
            return False
        return True

    def _say(self, message: str, error: bool = False) -> None:
        self.state.message = message
        self.state.message_error = error
