"""What the viewer's slice views show: one case's MRI, a segmentation and a latent overlay.

`CaseDisplay` reads files through the data layer (validated, one-line errors) and
builds the nodes with the shared scene code (`MedSegLensLib.scene`: case volumes,
BraTS segmentations with terminology and colours, latent overlay nodes), exactly
as the Slicer module does. It works on any scene whose slice views it is given
(trame-slicer's `SlicerApp`), knows nothing about the browser, and is rendered
offscreen in the tests. Slice views only: no volume rendering.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
from scipy.ndimage import find_objects

from ..data import MODALITIES, Case, read_volume
from ..data.geometry import to_canonical
from ..errors import InputError, ParameterError
from ..latent_focus import HEAT_COLORMAP, LatentFocus, latent_focus, legend_text
from .frame_order import FrameOrder
from .workspace import Workspace, WorkspaceCase

MODALITY_LABELS = {"t1n": "T1", "t1c": "T1c", "t2w": "T2", "t2f": "FLAIR"}
SEGMENTATION_SOURCES = ("prediction", "steered", "reference")  # in the order the page lists them
STEERED = "steered"
PLANE_TOLERANCE_MM = 1e-3  # a slice plane on a voxel face counts as crossing it
BRATS_LABELS = (0, 1, 2, 3)
DEFAULT_OVERLAY_OPACITY = 0.8
CACHED_MAPS = 6  # latent maps kept in memory per case (a BraTS-sized map is ~36 MB)


def changed_box(before: np.ndarray | None, after: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The first and last voxel (inclusive, per axis) of the box holding every voxel where `after` differs from
    `before`; None where none does; the whole array without a `before`."""
    if before is None or before.shape != after.shape:
        return np.zeros(3, int), np.array(after.shape) - 1
    found = find_objects((before != after).view(np.uint8))
    if not found:
        return None
    return np.array([axis.start for axis in found[0]]), np.array([axis.stop - 1 for axis in found[0]])


def view_name(view) -> str:
    """The view's orientation as the page names it: "axial", "coronal" or "sagittal"."""
    return view.get_view_node().GetOrientation().lower()


def axial_first(views: list) -> list:
    """The views in the order to draw them: the axial one (which the user mostly watches) first."""
    return sorted(views, key=lambda view: view_name(view) != "axial")


def release_without_redraw(view, blocked: bool) -> None:
    """Set a view's render block back to `blocked` without the redraw that trame-slicer's `set_render_blocked`
    schedules on unblocking: for a view whose picture a change does not alter (its own API has no such call)."""
    view._is_render_blocked = blocked


def read_on_case_grid(path: Path, case: Case, kind: str) -> np.ndarray:
    """A volume that must carry the case's geometry (a prediction or a latent map), on `case.grid`."""
    volume = read_volume(path, kind=kind)
    array, grid = to_canonical(volume.array, volume.grid)
    if not grid.same_as(case.grid):
        raise InputError(
            f"{path}: grid {volume.grid.shape} at {volume.grid.orientation} is not case {case.case_id}'s input grid "
            f"{case.source_grid.shape} at {case.source_grid.orientation}; write it in the input's geometry"
        )
    # uint8 labels up to 3 (what the worker writes) pass at a glance (np.unique took ~2.5 ms per steering result)
    if kind == "label" and not (array.dtype == np.uint8 and array.max() <= max(BRATS_LABELS)):
        outside = sorted(set(np.unique(array).tolist()) - set(BRATS_LABELS))
        if outside:
            raise InputError(f"{path}: label values {outside[:5]} are outside the BraTS labels 0-3")
    return array


class CaseDisplay:
    """Loads a workspace case into the scene and sets what the slice views show."""

    def __init__(self, slicer_app, workspace: Workspace, frames_sent: Callable[[], Awaitable] | None = None):
        """frames_sent: awaitable once the server has sent what it was handed (`FrameOrder`), e.g. trame's
        `server.network_completion`."""
        self._app = slicer_app
        self._workspace = workspace
        self.case: WorkspaceCase | None = None
        self.data: Case | None = None
        self.modality = MODALITIES[0]
        self.segmentation_source: str | None = None
        self.overlay_name: str | None = None
        self.overlay_threshold: float | None = None  # activation units; None: the shown latent's colour range start
        self.overlay_opacity = DEFAULT_OVERLAY_OPACITY
        self.focus: LatentFocus | None = None  # the shown latent's colour range and where it fires most
        self.origins: dict[str, dict] = {}  # per segmentation source: where it came from (provenance)
        self._nodes = None
        self._segmentations: dict[str, object] = {}
        self._steered_labels: np.ndarray | None = None  # what the "steered" node holds, canonical on the case grid
        self._overlay = None
        self._maps: OrderedDict[str, np.ndarray] = OrderedDict()
        self._map_latents: dict[str, int | None] = {}
        self._focus: dict[str, LatentFocus] = {}
        self._frame_order = FrameOrder(frames_sent)

    @property
    def scene(self):
        return self._app.scene

    # -- case -------------------------------------------------------------------------

    def load_case(self, case_id: str) -> WorkspaceCase:
        """Replace the shown case; on any error the previous case stays on screen."""
        with self.one_frame():
            return self._load_case(case_id)

    def _load_case(self, case_id: str) -> WorkspaceCase:
        from ..scene import add_brats_segmentation, add_case_volumes

        case = self._workspace.case(case_id)
        data = self._workspace.case_files(case).load()
        labels = {"reference": data.label}
        if case.prediction:
            path = self._workspace.resolve(case.prediction, f"case {case_id} prediction")
            labels["prediction"] = read_on_case_grid(path, data, "label")
        nodes = add_case_volumes(self.scene, data)
        segmentations: dict[str, object] = {}
        try:
            for source in SEGMENTATION_SOURCES:
                if labels.get(source) is not None:
                    role = "model" if source == "prediction" else "reference"
                    segmentations[source] = add_brats_segmentation(
                        self.scene, labels[source], data.grid, nodes.reference, f"{case_id} {source}", role=role
                    )
        except BaseException:
            self._remove([*nodes.volumes.values(), *segmentations.values()], nodes.study_item)
            raise
        self._clear()
        self.case, self.data, self._nodes, self._segmentations = case, data, nodes, segmentations
        if case.prediction:
            self.origins["prediction"] = {
                "file": str(self._workspace.resolve(case.prediction)),
                "model": self._workspace.default_model,
            }
        if data.label is not None:
            self.origins["reference"] = {"file": str(data.files["seg"])}
        self.overlay_name = None
        self.show_modality(self.modality)
        self.show_segmentation(next(iter(segmentations), None))
        self.reset_views()
        return case

    @property
    def segmentation_sources(self) -> list[str]:
        return list(self._segmentations)

    # -- MRI --------------------------------------------------------------------------

    def show_modality(self, modality: str) -> None:
        from ..scene import show_in_slice_views

        if modality not in MODALITIES:
            raise ParameterError(f"modality {modality!r} is not one of {', '.join(MODALITIES)}")
        self.modality = modality
        if self._nodes is not None:
            show_in_slice_views(self.scene, background=self._nodes.volumes[modality])

    def intensity_range(self) -> tuple[float, float]:
        """The shown modality's robust intensity range (0.1-99.9th percentiles)."""
        from trame_slicer.core.volume_window_level import VolumeWindowLevel

        return tuple(float(v) for v in VolumeWindowLevel.get_volume_auto_min_max_range(self._volume()))

    def display_range(self) -> tuple[float, float]:
        from trame_slicer.core.volume_window_level import VolumeWindowLevel

        return tuple(float(v) for v in VolumeWindowLevel.get_volume_display_range(self._volume()))

    def set_display_range(self, low: float, high: float) -> None:
        """Window/level as the intensity range mapped from black to white."""
        from trame_slicer.core.volume_window_level import VolumeWindowLevel

        if not high > low:
            raise ParameterError(f"display range [{low}, {high}] is empty; the upper bound must exceed the lower")
        VolumeWindowLevel.set_volume_node_display_min_max_range(self._volume(), float(low), float(high))

    # -- segmentation -----------------------------------------------------------------

    def show_segmentation(self, source: str | None) -> None:
        if source is not None and source not in self._segmentations:
            raise ParameterError(
                f"no {source} segmentation for this case; available: {', '.join(self._segmentations) or 'none'}"
            )
        self.segmentation_source = source
        for name, node in self._segmentations.items():
            node.GetDisplayNode().SetVisibility(name == source)

    def segmentation_node(self):
        return self._segmentations.get(self.segmentation_source) if self.segmentation_source else None

    def set_segmentation(self, source: str, labels_path: Path, origin: dict) -> list[str]:
        """Show a worker's segmentation (the model's, or a steering result) as `source`, replacing the previous one.

        Steering results redraw the case's "steered" node in place (`scene.update_preview_segmentation`), and
        while that node stays the shown one, only the slice views whose plane crosses the box of voxels whose
        label changed are redrawn, the axial first: the others' pictures are already right. Returns the names of
        the views redrawn (e.g. ["axial", "coronal"])."""
        if source not in SEGMENTATION_SOURCES:
            raise ParameterError(f"segmentation source {source!r} is not one of {', '.join(SEGMENTATION_SOURCES)}")
        self._require_case()
        labels = read_on_case_grid(labels_path, self.data, "label")
        previous = self._segmentations.get(source)
        if source == STEERED and previous is not None and self.segmentation_source == STEERED:
            views = self.views_through(changed_box(self._steered_labels, labels))
        else:
            views = self.slice_views()
        with self.one_frame(redraw=views):
            self._replace_segmentation(source, labels, previous)
            self.origins[source] = dict(origin)
            self.show_segmentation(source)
        return [view_name(view) for view in views]

    def _replace_segmentation(self, source: str, labels: np.ndarray, previous) -> None:
        from ..scene import add_brats_segmentation, remove_node, update_preview_segmentation

        if source == STEERED:
            self._steered_labels = labels
            if previous is not None:
                update_preview_segmentation(previous, labels, self.data.grid, self._nodes.reference)
                return
        role = "model" if source == "prediction" else "preview" if source == STEERED else source
        node = add_brats_segmentation(
            self.scene, labels, self.data.grid, self._nodes.reference, f"{self.case.case_id} {source}", role=role
        )
        if previous is not None:
            remove_node(self.scene, previous)
        self._segmentations[source] = node
        self._segmentations = {
            name: self._segmentations[name] for name in SEGMENTATION_SOURCES if name in self._segmentations
        }

    def segmentation_file(self) -> Path | None:
        """The workspace file the shown segmentation was read from (None for a worker's result)."""
        file = self.origins.get(self.segmentation_source, {}).get("file") if self.segmentation_source else None
        return Path(file) if file else None

    def write_segmentation(self, path: Path) -> None:
        """Write the shown segmentation as a .seg.nrrd (names, colours, terminology, input geometry)."""
        from ..scene import save_segmentation

        node = self.segmentation_node()
        if node is None:
            raise ParameterError("no segmentation is shown; pick one before accepting")
        save_segmentation(node, path, overwrite=True)

    # -- latent overlay ---------------------------------------------------------------

    def show_overlay(self, name: str | None, jump: bool = True) -> None:
        """Show a latent activation map over the MRI (None hides it); one overlay node, updated in place.

        A newly selected latent starts at its own colour range (`latent_focus`: percentiles of its positive
        activations here) with the threshold at the range's start, and with `jump` the three slices move to where
        it fires most. The heat colour map spans the range; voxels below the threshold stay transparent.
        """
        with self.one_frame():
            self._show_overlay(name, jump)

    def _show_overlay(self, name: str | None, jump: bool = True) -> None:
        from ..scene import add_latent_overlay, show_in_slice_views, update_latent_overlay

        case = self._require_case()
        if name is None:
            self.overlay_name = None
            show_in_slice_views(self.scene, foreground_opacity=0.0)
            return
        activation = self._activation(case, name)
        latent = self._map_latents[name]
        focus = self._focus.get(name)
        if focus is None:
            focus = self._focus[name] = latent_focus(activation)
        if name != self.overlay_name:
            self.overlay_threshold = None
        threshold = self.threshold_of(focus)
        if self._overlay is None:
            self._overlay = add_latent_overlay(
                self.scene,
                activation,
                self.data.grid,
                self._nodes.reference,
                name,
                threshold=threshold,
                latent=latent,
                colormap_id=HEAT_COLORMAP,
            )
        else:
            update_latent_overlay(
                self._overlay, activation, self.data.grid, threshold=threshold, latent=latent, name=name
            )
        self._colour(focus, threshold)
        moved = name != self.overlay_name
        self.overlay_name, self.focus = name, focus
        show_in_slice_views(self.scene, foreground=self._overlay, foreground_opacity=self.overlay_opacity)
        if jump and moved:
            self.jump_to(focus.focus_ras(self.data.grid.affine))

    def threshold_of(self, focus: LatentFocus) -> float:
        return focus.low if self.overlay_threshold is None else self.overlay_threshold

    def _colour(self, focus: LatentFocus, threshold: float) -> None:
        """The heat colour map over the latent's range; transparent below `threshold` (activation units)."""
        display = self._overlay.GetDisplayNode()
        low, high = focus.window()
        lower = max(float(threshold), float(np.finfo(np.float32).tiny))
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(low, high)
        display.AutoThresholdOff()
        display.SetApplyThreshold(1)
        display.SetThreshold(lower, float(np.finfo(np.float32).max))

    def jump_to(self, ras) -> None:
        """Move every slice view through the physical point `ras` (mm); nothing when None."""
        if ras is None:
            return
        for view in self.slice_views():
            view.get_view_node().JumpSliceByOffsetting(*(float(v) for v in ras))

    def legend(self) -> dict | None:
        """The shown latent's colour range and threshold in activation units (None without an overlay), with the
        legend's line (`text`) written by the rule the Slicer module's legend uses (`latent_focus.legend_text`)."""
        if self.overlay_name is None or self.focus is None:
            return None
        legend = self.focus.legend(self.threshold_of(self.focus))
        focus = self.focus.focus_ras(self.data.grid.affine)
        legend["focus_ras"] = None if focus is None else [round(v, 1) for v in focus]
        legend["latent"] = self._map_latents.get(self.overlay_name)
        legend["text"] = legend_text(legend)
        return legend

    def add_map(self, name: str, path: Path, latent: int | None) -> None:
        """Keep a latent map the worker computed (read now: the worker deletes its files) under `name`."""
        self._require_case()
        self._remember(name, read_on_case_grid(path, self.data, "image"), latent)

    def has_map(self, name: str) -> bool:
        return name in self._maps

    def _activation(self, case: WorkspaceCase, name: str) -> np.ndarray:
        """The latent map on the case grid; recently shown maps stay in memory (stepping back is instant)."""
        if name in self._maps:
            self._maps.move_to_end(name)
            return self._maps[name]
        overlay = case.overlay(name)
        path = self._workspace.resolve(overlay.file, f"case {case.case_id} overlay {name!r}")
        return self._remember(name, read_on_case_grid(path, self.data, "image"), overlay.latent)

    def _remember(self, name: str, activation: np.ndarray, latent: int | None) -> np.ndarray:
        self._maps[name] = activation
        self._map_latents[name] = latent
        self._focus.pop(name, None)
        while len(self._maps) > CACHED_MAPS:
            dropped = self._maps.popitem(last=False)[0]
            self._map_latents.pop(dropped, None)
            self._focus.pop(dropped, None)
        return activation

    def set_overlay_style(self, threshold: float | None = None, opacity: float | None = None) -> None:
        """Threshold (activation units: transparent below it) and opacity (0..1)."""
        if threshold is not None and not (np.isfinite(threshold) and threshold >= 0.0):
            raise ParameterError(f"overlay threshold {threshold} must be a finite activation >= 0")
        if opacity is not None and not 0.0 <= opacity <= 1.0:
            raise ParameterError(f"overlay opacity {opacity} must lie in [0, 1]")
        if threshold is not None:
            self.overlay_threshold = float(threshold)
        if opacity is not None:
            self.overlay_opacity = float(opacity)
        if self.overlay_name is not None:
            self.show_overlay(self.overlay_name, jump=False)

    # -- views ------------------------------------------------------------------------

    def slice_views(self) -> list:
        return self._app.view_manager.get_slice_views()

    def views_through(self, box: tuple[np.ndarray, np.ndarray] | None) -> list:
        """The slice views whose plane passes through a voxel of `box` (first and last canonical voxel on the
        case grid, inclusive; None: no voxel), the axial view first."""
        if box is None:
            return []
        low, high = box
        corners = np.array(list(itertools.product(*zip(low - 0.5, high + 0.5))))  # the voxels' outer faces
        ras = corners @ np.asarray(self.data.grid.affine, float)[:3, :3].T + np.asarray(self.data.grid.affine)[:3, 3]
        crossed = []
        for view in self.slice_views():
            slice_to_ras = view.get_view_node().GetSliceToRAS()
            normal = np.array([slice_to_ras.GetElement(row, 2) for row in range(3)])
            origin = np.array([slice_to_ras.GetElement(row, 3) for row in range(3)])
            distance = (ras - origin) @ (normal / np.linalg.norm(normal))
            if distance.min() <= PLANE_TOLERANCE_MM and distance.max() >= -PLANE_TOLERANCE_MM:
                crossed.append(view)
        return axial_first(crossed)

    @contextlib.contextmanager
    def one_frame(self, redraw: list | None = None):
        """Hold the views' redraws while a change modifies many nodes; redraw once at the end: every view, or only
        the views in `redraw` (in its order; the others' pictures must not depend on the change). The first view's
        frame is drawn and sent before the others are drawn (`FrameOrder`)."""
        self._frame_order.flush()  # views an earlier change still holds back are released before they are held
        views = self.slice_views()
        were_blocked = {id(view): view.set_render_blocked(True) for view in views}
        try:
            yield
        finally:
            redrawn = axial_first(views) if redraw is None else redraw
            self._frame_order.release(redrawn, were_blocked)
            for view in views:
                if view not in redrawn:
                    release_without_redraw(view, were_blocked[id(view)])

    def reset_views(self) -> None:
        for view in self.slice_views():
            view.fit_view_to_content()

    # -- nodes ------------------------------------------------------------------------

    def _require_case(self) -> WorkspaceCase:
        if self.case is None:
            raise ParameterError("no case is loaded; pick a case first")
        return self.case

    def _volume(self):
        self._require_case()
        return self._nodes.volumes[self.modality]

    def _clear(self) -> None:
        if self._nodes is not None:
            nodes = [*self._nodes.volumes.values(), *self._segmentations.values(), self._overlay]
            self._remove([n for n in nodes if n is not None], self._nodes.study_item)
        self._nodes, self._segmentations, self._overlay = None, {}, None
        self._steered_labels = None
        self._maps.clear()
        self._map_latents.clear()
        self._focus.clear()
        self.focus = None
        self.case = self.data = None
        self.origins = {}

    def _remove(self, nodes: list, study_item: int) -> None:
        """Remove a case's nodes, then its patient/study items once nothing else sits under them."""
        from slicer import vtkMRMLSubjectHierarchyNode

        from ..scene import remove_node

        for node in nodes:
            remove_node(self.scene, node)
        hierarchy = vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        patient = hierarchy.GetItemParent(study_item)
        for item in (study_item, patient):
            if item and item != hierarchy.GetSceneItemID() and hierarchy.GetNumberOfItemChildren(item) == 0:
                hierarchy.RemoveItem(item, False, False)
