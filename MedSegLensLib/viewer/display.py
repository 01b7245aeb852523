"""What the viewer's slice views show: one case's MRI, a segmentation and a latent overlay.

`CaseDisplay` works on a trame-slicer `SlicerApp` (its MRML scene and slice views)
and knows nothing about the browser, so the same code is rendered offscreen in the
tests and streamed to the browser by the app. Slice views only: no volume rendering.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..data import MODALITIES, read_volume
from ..errors import InputError, ParameterError
from .workspace import Workspace, WorkspaceCase

MODALITY_LABELS = {"t1n": "T1", "t1c": "T1c", "t2w": "T2", "t2f": "FLAIR"}
SEGMENTATION_SOURCES = ("prediction", "reference")
OVERLAY_COLORS = "vtkMRMLPETProceduralColorNodePET-Heat"
DEFAULT_OVERLAY_THRESHOLD = 0.25
DEFAULT_OVERLAY_OPACITY = 0.8

Progress = Callable[[float, str], None]


def _validate(files, prediction: str | None) -> None:
    """Read the case through the data layer first: Slicer's readers accept a truncated file silently."""
    files.load()
    if prediction:
        read_volume(prediction, kind="label")


class CaseDisplay:
    """Loads a workspace case into the scene and sets what the slice views show."""

    def __init__(self, slicer_app, workspace: Workspace):
        self._app = slicer_app
        self._workspace = workspace
        self.case: WorkspaceCase | None = None
        self.modality = MODALITIES[0]
        self.segmentation_source: str | None = None
        self.overlay_name: str | None = None
        self.overlay_threshold = DEFAULT_OVERLAY_THRESHOLD
        self.overlay_opacity = DEFAULT_OVERLAY_OPACITY
        self._volumes: dict[str, object] = {}
        self._segmentations: dict[str, object] = {}
        self._overlays: dict[str, object] = {}

    # -- case -------------------------------------------------------------------------

    def load_case(self, case_id: str, progress: Progress | None = None) -> WorkspaceCase:
        """Replace the shown case; on any error the previous case stays on screen."""
        progress = progress or (lambda fraction, message: None)
        case = self._workspace.case(case_id)
        files = self._workspace.case_files(case)
        sources = {"reference": files.seg}
        if case.prediction:
            sources["prediction"] = str(self._workspace.resolve(case.prediction, f"case {case_id} prediction"))
        steps = len(MODALITIES) + sum(1 for path in sources.values() if path)
        volumes: dict[str, object] = {}
        segmentations: dict[str, object] = {}
        _validate(files, sources.get("prediction"))
        try:
            for number, modality in enumerate(MODALITIES):
                progress(number / steps, f"loading {MODALITY_LABELS[modality]}")
                volumes[modality] = self._read_volume(Path(files.modalities[modality]), f"{case_id} {MODALITY_LABELS[modality]}")
            for source, path in sources.items():
                if path:
                    progress((len(volumes) + len(segmentations)) / steps, f"loading {source} segmentation")
                    segmentations[source] = self._read_segmentation(Path(path), f"{case_id} {source}")
        except BaseException:
            for node in [*volumes.values(), *segmentations.values()]:
                self._remove(node)
            raise
        self._clear()
        self.case, self._volumes, self._segmentations = case, volumes, segmentations
        self.overlay_name = None
        self.show_modality(self.modality)
        self.show_segmentation("prediction" if "prediction" in segmentations else ("reference" if segmentations else None))
        self.reset_views()
        progress(1.0, f"{case_id} loaded")
        return case

    @property
    def segmentation_sources(self) -> list[str]:
        return [source for source in SEGMENTATION_SOURCES if source in self._segmentations]

    # -- MRI --------------------------------------------------------------------------

    def show_modality(self, modality: str) -> None:
        if modality not in MODALITIES:
            raise ParameterError(f"modality {modality!r} is not one of {', '.join(MODALITIES)}")
        self.modality = modality
        node = self._volumes.get(modality)
        for view in self.slice_views():
            view.set_background_volume_id(node.GetID() if node else None)

    def intensity_range(self) -> tuple[float, float]:
        """The shown modality's robust intensity range (0.1-99.9th percentiles)."""
        from trame_slicer.core.volume_window_level import VolumeWindowLevel

        node = self._require_volume()
        return tuple(float(v) for v in VolumeWindowLevel.get_volume_auto_min_max_range(node))

    def display_range(self) -> tuple[float, float]:
        from trame_slicer.core.volume_window_level import VolumeWindowLevel

        return tuple(float(v) for v in VolumeWindowLevel.get_volume_display_range(self._require_volume()))

    def set_display_range(self, low: float, high: float) -> None:
        """Window/level as the intensity range mapped from black to white."""
        from trame_slicer.core.volume_window_level import VolumeWindowLevel

        if not high > low:
            raise ParameterError(f"display range [{low}, {high}] is empty; the upper bound must exceed the lower")
        VolumeWindowLevel.set_volume_node_display_min_max_range(self._require_volume(), float(low), float(high))

    # -- segmentation -----------------------------------------------------------------

    def show_segmentation(self, source: str | None) -> None:
        if source is not None and source not in self._segmentations:
            raise ParameterError(f"no {source} segmentation for this case; available: {', '.join(self._segmentations) or 'none'}")
        self.segmentation_source = source
        for name, node in self._segmentations.items():
            node.GetDisplayNode().SetVisibility(name == source)

    def segmentation_node(self):
        return self._segmentations.get(self.segmentation_source) if self.segmentation_source else None

    def segmentation_file(self) -> Path | None:
        node = self.segmentation_node()
        storage = node.GetStorageNode() if node else None
        return Path(storage.GetFileName()) if storage and storage.GetFileName() else None

    def write_segmentation(self, path: Path) -> None:
        """Write the shown segmentation as a .seg.nrrd (names, colours and geometry kept)."""
        from slicer import vtkMRMLSegmentationStorageNode

        node = self.segmentation_node()
        if node is None:
            raise ParameterError("no segmentation is shown; pick one before accepting")
        storage = vtkMRMLSegmentationStorageNode()
        storage.SetFileName(str(path))
        storage.SetUseCompression(1)
        if not storage.WriteData(node):
            raise InputError(f"{path}: the segmentation could not be written")

    # -- latent overlay ---------------------------------------------------------------

    def show_overlay(self, name: str | None) -> None:
        """Show a latent activation map over the MRI (None hides it); maps load on first use."""
        case = self._require_case()
        node = None
        if name is not None:
            overlay = case.overlay(name)
            node = self._overlays.get(name)
            if node is None:
                path = self._workspace.resolve(overlay.file, f"case {case.case_id} overlay {name!r}")
                read_volume(path)
                node = self._read_volume(path, f"{case.case_id} {name}")
                self._overlays[name] = node
            self._style_overlay(node)
        self.overlay_name = name
        for view in self.slice_views():
            view.set_foreground_volume_id(node.GetID() if node else None)
            view.set_foreground_opacity(self.overlay_opacity if node else 0.0)

    def set_overlay_style(self, threshold: float | None = None, opacity: float | None = None) -> None:
        """Threshold (fraction of the map's maximum below which it is transparent) and opacity."""
        for value, what in ((threshold, "overlay threshold"), (opacity, "overlay opacity")):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ParameterError(f"{what} {value} must lie in [0, 1]")
        if threshold is not None:
            self.overlay_threshold = float(threshold)
        if opacity is not None:
            self.overlay_opacity = float(opacity)
        if self.overlay_name is not None:
            self.show_overlay(self.overlay_name)

    def _style_overlay(self, node) -> None:
        low, high = node.GetImageData().GetScalarRange()
        peak = high if high > 0 else 1.0
        cut = self.overlay_threshold * peak
        display = node.GetDisplayNode()
        display.SetAndObserveColorNodeID(OVERLAY_COLORS)
        display.SetAutoWindowLevel(0)
        display.SetWindowLevelMinMax(cut, peak)
        display.SetAutoThreshold(0)
        display.SetApplyThreshold(1)
        display.SetThreshold(max(cut, 1e-6 * peak), max(high, peak) + 1.0)

    # -- views ------------------------------------------------------------------------

    def slice_views(self) -> list:
        return self._app.view_manager.get_slice_views()

    def reset_views(self) -> None:
        for view in self.slice_views():
            view.fit_view_to_content()

    # -- nodes ------------------------------------------------------------------------

    def _read_volume(self, path: Path, name: str):
        node = self._app.volumes_logic.AddArchetypeVolume(str(path), name, 0)
        if node is None or node.GetImageData() is None:
            raise InputError(f"{path}: Slicer could not read this volume; check that it is a valid NIfTI/NRRD file")
        return node

    def _read_segmentation(self, path: Path, name: str):
        node = self._app.segmentations_logic.LoadSegmentationFromFile(str(path), True, name)
        if node is None:
            raise InputError(f"{path}: Slicer could not read this segmentation; check that it is a valid label map")
        node.CreateDefaultDisplayNodes()
        return node

    def _require_case(self) -> WorkspaceCase:
        if self.case is None:
            raise ParameterError("no case is loaded; pick a case first")
        return self.case

    def _require_volume(self):
        self._require_case()
        return self._volumes[self.modality]

    def _clear(self) -> None:
        for node in [*self._volumes.values(), *self._segmentations.values(), *self._overlays.values()]:
            self._remove(node)
        self._volumes, self._segmentations, self._overlays = {}, {}, {}
        self.case = None

    def _remove(self, node) -> None:
        scene = self._app.scene
        attached = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        attached.append(node.GetStorageNode())
        for other in attached:
            if other is not None:
                scene.RemoveNode(other)
        scene.RemoveNode(node)
