"""The viewer application: browser state on one side, `CaseDisplay` and the workspace on the other.

Every value that arrives from the browser is untrusted: a case id, an overlay name
or a modality is looked up in the workspace index, never used as a path. Errors a
user can cause are shown in the page and leave the displayed case as it was.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..data import MODALITIES
from ..errors import MedSegLensError, ParameterError
from ..fileio import sha256_file
from ..latent_browser import TYPICAL_FILE, card_file, read_interpretation, read_typical
from ..latent_focus import legend_text
from ..scene import Provenance, attach_provenance
from .accepted import accept_segmentation, timestamped_stem
from .display import MODALITY_LABELS, CaseDisplay
from .jobs import WorkerJobs
from .latent_panel import LatentBrowser
from .steer_updates import SteerUpdates
from .steering_panel import SteeringPanel
from .triage_panel import TriagePanel, triage_order
from .workspace import ModelEntry, SaeEntry, Workspace, WorkspaceCase, dice_text

if TYPE_CHECKING:
    from ..triage.read import Worklist

NO_SELECTION = "none"
UNCERTAINTY = "softmax-entropy"  # the overlay name of the uncertainty map (the worker's `uncertainty_map`)


def number(value, what: str) -> float:
    """A finite number from the page (whose state anyone holding the token can set)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParameterError(f"{what} {value!r} is not a finite number")
    return float(value)


def case_row(case: WorkspaceCase) -> dict:
    """One line of the case list: what a QA lead scans for."""
    return {
        "case_id": case.case_id,
        "population": case.population,
        "dice": dice_text(case.dice),
        "failure": case.failure,
    }


class ViewerApp:
    """Binds the trame state to the case display, the accepted-segmentation store and the panels."""

    def __init__(self, server, slicer_app, workspace: Workspace, worklist: Worklist | None = None):
        self.server = server
        self.state = server.state
        self.workspace = workspace
        self.display = CaseDisplay(slicer_app, workspace, frames_sent=lambda: server.network_completion)
        self.jobs = WorkerJobs(server, workspace.root, self._say)
        self.pair = self._analysis_pair()
        self.latents = LatentBrowser(self.state, self.pair[1].name if self.pair else None, *self._interpretation())
        self.steering = SteeringPanel(self.state, self.latents.typical)
        self.analysis: dict | None = None
        self.steer_updates = SteerUpdates(self.jobs, self._show_steered)
        self.triage = TriagePanel(self.state, worklist)
        self.entropy_ceiling: float | None = None  # ln(classes) of the shown case's model, once its map is known
        self._initial_state()
        self.state.change("case_id")(self._on_case)
        self.state.change("modality")(self._on_modality)
        self.state.change("display_range")(self._on_display_range)
        self.state.change("seg_source")(self._on_segmentation)
        self.state.change("overlay_name")(self._on_overlay)
        self.state.change("overlay_threshold", "overlay_opacity")(self._on_overlay_style)
        self.state.change("latent_filter")(lambda latent_filter, **_: self.latents.set_filter(latent_filter))
        self.state.change("steer_mode")(self._on_steer_mode)
        self.state.change("steer_latents", "steer_strengths", "steer_region", "steer_margin")(self._on_steer)
        server.controller.sort_latents = self.latents.sort_by
        server.controller.accept_segmentation = self.accept
        server.controller.run_model = self.run_model
        server.controller.reset_views = self.display.reset_views

    def _initial_state(self) -> None:
        s = self.state
        s.trame__title = "MedSegLens viewer"
        cases = triage_order(self.workspace.cases, self.triage.worklist)
        s.cases = [{**case_row(case), **self.triage.case_cells(case)} for case in cases]
        s.case_id = None
        s.case_title = "no case loaded"
        s.modalities = [{"value": m, "title": MODALITY_LABELS[m]} for m in MODALITIES]
        s.modality = MODALITIES[0]
        s.display_range = [0.0, 1.0]
        s.display_bounds = [0.0, 1.0]
        s.seg_sources = []
        s.seg_source = NO_SELECTION
        s.overlay_name = NO_SELECTION
        s.overlay_threshold = 0.0
        s.overlay_threshold_max = 1.0
        s.overlay_opacity = self.display.overlay_opacity
        s.overlay_legend = None
        s.analysis_ready = False
        s.message = ""
        s.message_error = False
        s.accepted = []
        s.model_label = self.workspace.default_model or "no model named in workspace.json"
        s.model_ready = self._model_folder() is not None

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
        s.overlay_name = NO_SELECTION
        s.overlay_legend = None
        s.accepted = []
        self._publish_range()
        self.analysis = None
        s.analysis_ready = False
        self.entropy_ceiling = None
        self.steer_updates.forget()
        self.latents.set_case(case)
        self.triage.show(case, self.latents.map_name, self.latents.description)
        self.steering.reset(self._steering_note())
        self.steering.show_unsteered(case.dice)
        self._say(f"{case.case_id} loaded")
        if self.pair is not None:
            self._attempt("analysing", lambda: self._analyse(case))

    def _publish_range(self) -> None:
        low, high = self.display.intensity_range()
        shown = self.display.display_range()
        span = max(high - low, 1e-6)
        self.state.display_bounds = [low - 0.5 * span, high + 0.5 * span]
        self.state.display_range = [float(shown[0]), float(shown[1])]

    def _on_modality(self, modality, **_):
        if self.display.case is not None and modality != self.display.modality:
            self._attempt(
                "changing modality", lambda: (self.display.show_modality(str(modality)), self._publish_range())
            )

    def _on_display_range(self, display_range, **_):
        if self.display.case is None or not isinstance(display_range, (list, tuple)) or len(display_range) != 2:
            return
        self._attempt(
            "setting window/level",
            lambda: self.display.set_display_range(
                number(display_range[0], "window"), number(display_range[1], "window")
            ),
        )

    def _on_segmentation(self, seg_source, **_):
        if self.display.case is not None:
            source = None if seg_source == NO_SELECTION else str(seg_source)
            self._attempt("changing segmentation", lambda: self.display.show_segmentation(source))

    def _on_overlay(self, overlay_name, **_):
        if self.display.case is not None:
            name = None if overlay_name == NO_SELECTION else str(overlay_name)
            self._attempt("showing overlay", lambda: self._show_overlay(name))

    def _show_overlay(self, name: str | None) -> None:
        """A precomputed or already computed map at once; any other latent's map (or the uncertainty map, which
        keeps the slices where they are) from the worker."""
        case = self.display.case
        self.latents.select(self.latents.latent_of(name) if name else None)
        if name is None or self.display.has_map(name) or any(o.name == name for o in case.overlays):
            self.display.show_overlay(name, jump=name != UNCERTAINTY)
            self._publish_overlay()
            return
        if name == UNCERTAINTY:
            self._show_uncertainty(case)
            return
        latent = self.latents.latent_of(name)
        if latent is None or self.analysis is None:
            raise ParameterError(f"no latent map named {name!r} for {case.case_id}")

        def show(result: dict) -> None:
            if self.display.case is case and self.state.overlay_name == name:
                self.display.add_map(name, Path(result["map"]), latent)
                self.display.show_overlay(name)
                self._publish_overlay()

        self.jobs.submit(
            "latent_map", {**self._analysis_params(case), "latent": latent}, f"latent {latent}", show, slot="map"
        )

    def _show_uncertainty(self, case: WorkspaceCase) -> None:
        """The voxel-wise softmax entropy of the analysed case's segmentation, from the worker's cached logits."""
        if self.analysis is None:
            raise ParameterError(f"{case.case_id} is still being analysed; the uncertainty map follows its logits")

        def show(result: dict) -> None:
            if self.display.case is case and self.state.overlay_name == UNCERTAINTY:
                self.entropy_ceiling = result["max_entropy"]
                self.display.add_map(UNCERTAINTY, Path(result["map"]), None)
                self.display.show_overlay(UNCERTAINTY, jump=False)
                self._publish_overlay()

        self.jobs.submit("uncertainty_map", self._analysis_params(case), "uncertainty map", show, slot="map")

    def _publish_overlay(self) -> None:
        """The shown map's legend (colour range and threshold in its units: a latent's activation, or nats for the
        uncertainty map) and the threshold slider."""
        legend = self._legend()
        self.state.overlay_legend = legend
        if legend is not None:
            self.state.overlay_threshold_max = legend["peak"]
            self.state.overlay_threshold = legend["threshold"]

    def _legend(self) -> dict | None:
        """The display's legend with its units; the uncertainty map's line names the entropy and its ceiling."""
        legend = self.display.legend()
        if legend is None:
            return None
        if self.display.overlay_name != UNCERTAINTY:
            return {**legend, "units": "activation"}
        ceiling = f", at most {self.entropy_ceiling:.3g}" if self.entropy_ceiling else ""
        line = legend_text({**legend, "focus_ras": None})
        return {**legend, "units": "entropy (nats)", "text": f"softmax entropy (nats{ceiling}) · {line}"}

    def _on_overlay_style(self, overlay_threshold, overlay_opacity, **_):
        if self.display.case is None:
            return
        legend = self.display.legend()
        # The threshold slider is in the shown latent's activation units; before a latent is shown it means nothing.
        threshold = None if legend is None or overlay_threshold == legend["threshold"] else overlay_threshold

        def style():
            self.display.set_overlay_style(
                threshold=None if threshold is None else number(threshold, "overlay threshold"),
                opacity=number(overlay_opacity, "overlay opacity"),
            )
            if threshold is not None:
                self.state.overlay_legend = self._legend()

        self._attempt("styling overlay", style)

    # -- analysis and steering (background worker) ----------------------------------------

    def _analysis_pair(self) -> tuple[ModelEntry, SaeEntry] | None:
        """The workspace's model/SAE pair for latents and steering, when both folders exist."""
        pair = self.workspace.analysis()
        if pair is None:
            return None
        try:
            folders = [self.workspace.resolve(entry.folder, f"{entry.name} folder") for entry in pair]
        except MedSegLensError:
            return None
        return pair if all(folder.is_dir() for folder in folders) else None

    def _interpretation(self) -> tuple:
        """Typical activations (SAE folder's latent_scales.json), latents.json records and a card lookup, each
        read defensively (missing or unreadable: the browser shows less); paths stay inside the workspace."""
        if self.pair is None:
            return None, {}, None
        sae = self.pair[1]
        folder = self.workspace.resolve(sae.folder, f"{sae.name} folder")
        typical = read_typical(folder / TYPICAL_FILE)
        labels = (
            self.workspace.resolve(sae.interpretation, f"{sae.name} interpretation")
            if sae.interpretation
            else folder / "latents.json"
        )
        root = self.workspace.root.resolve()

        def card(latent: int) -> Path | None:
            path = card_file(labels, latent)
            try:
                return path if path.resolve().is_relative_to(root) else None
            except OSError:
                return None

        return typical, read_interpretation(labels), card

    def _steering_note(self) -> str:
        if self.pair is None:
            return 'Steering needs a model and its SAE (existing folders listed under "models" in workspace.json).'
        return f"Analysing the case with {self.pair[0].name} and SAE {self.pair[1].name}..."

    def _analysis_params(self, case: WorkspaceCase) -> dict:
        model, sae = self.pair
        params = {
            "model": str(self.workspace.resolve(model.folder)),
            "sae": str(self.workspace.resolve(sae.folder)),
            "case": str(self.workspace.resolve(case.folder)),
            "case_id": case.case_id,
        }
        for key, path in (("labels", sae.interpretation), ("populations", sae.populations)):
            if path:
                params[key] = str(self.workspace.resolve(path))
        return params

    def _analyse(self, case: WorkspaceCase) -> None:
        def analysed(result: dict) -> None:
            self.analysis = result
            model, sae = self.pair
            origin = {
                "file": None,
                "job": "encode",
                "model": model.folder,
                "model_sha256": result["model"]["fingerprint"],
                "sae": sae.folder,
                "sae_sha256": result["sae"]["sha256"],
            }
            self._show_segmentation("prediction", Path(result["segmentation"]), origin)
            self.state.analysis_ready = True
            self.latents.set_analysis(result)
            self.steering.set_analysis(result)
            self.triage.check_sae(result["sae"]["sha256"])
            self._say(f"{case.case_id}: {len(result['latents'])} active latents of {sae.name}")

        self.jobs.submit(
            "encode",
            self._analysis_params(case),
            f"analysing {case.case_id}",
            self._for_case(case, analysed),
            slot="analysis",
        )

    def _on_steer_mode(self, **_):
        if self.analysis is not None:
            self._attempt("steering", self.steering.on_mode)

    def _on_steer(self, **_):
        if self.analysis is not None:
            self.steering.publish_readout()
            self._attempt("steering", self._steer)

    def _steer(self) -> None:
        spec = self.steering.spec()
        if spec == self.steer_updates.latest:
            return  # the same controls (e.g. only a readout changed): nothing new to compute or show
        case = self.display.case
        if spec is None:  # back to neutral: the model's output again (a result still on its way is dropped)
            self.steer_updates.forget()
            if self.display.segmentation_source == "steered":
                self.state.seg_source = "prediction"
            self.steering.show_unsteered(case.dice)
            return
        params = self._analysis_params(case)
        if self.display.data.files.get("seg"):
            params["reference"] = str(self.display.data.files["seg"])
        self.steer_updates.request(spec, params)

    def _show_steered(self, result: dict) -> None:
        """A steering result (preview or exact) as the "steered" segmentation, with its provenance and readout."""
        record = json.loads(result["provenance"])
        model, sae = self.pair
        origin = {
            "file": None,
            "job": "steer",
            "model": model.folder,
            "model_sha256": record["model_sha256"],
            "sae": sae.folder,
            "sae_sha256": record["sae_sha256"],
            "steering": {
                "spec": result["spec"],
                "record": record,
                "dice": result["dice"],
                "dice_unsteered": result["dice_unsteered"],
            },
        }
        redrawn = self._show_segmentation("steered", Path(result["segmentation"]), origin)
        self.steering.show_result(result, redrawn)

    def _show_segmentation(self, source: str, path: Path, origin: dict) -> list[str]:
        """Show a worker's segmentation; returns the names of the views it redrew (`CaseDisplay.set_segmentation`)."""
        redrawn = self.display.set_segmentation(source, path, origin)
        self.state.seg_sources = self.display.segmentation_sources
        self.state.seg_source = source
        return redrawn

    def _for_case(self, case: WorkspaceCase, action):
        """A job's result handler that applies only while `case` is still shown."""

        def apply(result: dict) -> None:
            if self.display.case is not case:
                raise ParameterError(f"{case.case_id} is no longer shown; the result was dropped")
            action(result)

        return apply

    # -- model run (background worker) ----------------------------------------------------

    def _model_folder(self) -> Path | None:
        if not self.workspace.default_model:
            return None
        try:
            folder = self.workspace.resolve(self.workspace.default_model, "default model")
        except MedSegLensError:
            return None
        return folder if folder.is_dir() else None

    def run_model(self) -> None:
        """Segment the shown case with the workspace's model in the worker; the page stays live."""
        self._attempt("running the model", self._run_model)

    def _run_model(self) -> None:
        case = self.display.case
        if case is None:
            raise ParameterError("no case is loaded; pick a case first")
        model = self._model_folder()
        if model is None:
            raise ParameterError(f"model folder {self.workspace.default_model!r} not found in the workspace")
        params = {"model": str(model), "case": str(self.workspace.resolve(case.folder)), "case_id": case.case_id}
        self.jobs.submit("segment", params, f"segmenting {case.case_id}", self._for_case(case, self._show_model_result))

    def _show_model_result(self, result: dict) -> None:
        origin = {
            "file": None,
            "model": self.workspace.default_model,
            "model_sha256": result["model"]["fingerprint"],
            "job": "segment",
        }
        self._show_segmentation("prediction", Path(result["segmentation"]), origin)
        self._say(f"{self.display.case.case_id}: segmentation by {result['model']['architecture']} shown")

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
        if source == "steered" and self.jobs.busy("steer"):
            raise ParameterError(
                "the steered segmentation is still being computed; accept once the exact result is shown"
            )
        source_file = self.display.segmentation_file()
        origin = self.display.origins.get(source, {})
        steering = origin.get("steering")
        provenance = {
            "source": source,
            "source_file": os.path.relpath(source_file, self.workspace.root.resolve()) if source_file else None,
            "source_sha256": sha256_file(source_file) if source_file else None,
            "model": origin.get("model"),
            "model_sha256": origin.get("model_sha256"),
            "sae": origin.get("sae"),
            "sae_sha256": origin.get("sae_sha256"),
            "steering": steering,
        }
        if steering is not None:
            record = Provenance.from_json(json.dumps(steering["record"]))
        elif origin.get("model_sha256"):
            record = Provenance(
                latents=[],
                strengths=[],
                mode="none",
                model_sha256=origin["model_sha256"],
                source_segmentation=self.display.segmentation_node().GetName(),
            )
        else:
            record = None
        if record is not None:
            attach_provenance(self.display.segmentation_node(), record)
            provenance["record"] = json.loads(record.to_json())
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
