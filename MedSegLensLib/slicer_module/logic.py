"""The Slicer module's logic without Qt: scene in, a worker job, scene out.

`ModuleLogic` takes its collaborators as parameters (the MRML scene, a
`WorkerProcess`, the scene functions: `MedSegLensLib.scene` unless the caller
gives another implementation), so the same code runs in desktop Slicer,
where the widget pumps `poll()` from a `qt.QTimer`, and in pytest with a real
slicer-core scene and a real worker subprocess. Nothing is added to the scene
until a job's result has arrived and imported completely: a cancelled, failed
or crashed job leaves the scene exactly as it was.

The flow a user drives: `analyse` (segmentation node + latent browser rows),
`show_latent` / `set_overlay_threshold` / `set_overlay_style` (one overlay node,
redrawn in place), `preview` (steering preview node, Dice against a reference),
`accept` (a new segmentation node with provenance), `export_segmentation` and
`save_scene`. The same worker jobs serve the browser viewer.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..data import MODALITIES, read_case, read_volume, write_volume
from ..errors import MedSegLensError, ParameterError
from ..latent_browser import TYPICAL_FILE, LatentTable, read_typical
from ..worker.client import WorkerProcess
from ..worker.protocol import Message, one_line
from .overlay import LatentOverlay
from .steering import SteeringOutcome, SteeringPreview, SteeringRequest, segmentation_mask


def _ignore(*args: Any) -> None:
    return None


@dataclass
class JobCallbacks:
    """What the caller hears about a job; all run on the thread that calls `poll()`."""

    progress: Callable[[float, str], None] = _ignore
    log: Callable[[str], None] = _ignore
    finished: Callable[[Any], None] = _ignore  # receives the new node
    failed: Callable[[str], None] = _ignore  # receives a one-line message
    cancelled: Callable[[], None] = _ignore
    superseded: Callable[[], None] = _ignore  # a newer request of the same kind replaced this one


@dataclass
class _Job:
    job: str
    params: dict[str, Any]
    callbacks: JobCallbacks
    on_result: Callable[[dict[str, Any]], Any]
    slot: str | None = None  # interactive requests of one slot supersede each other
    request_id: str | None = None


@dataclass
class CaseAnalysis:
    """The analysed case: what the worker needs to find its cache again, and the case's nodes."""

    params: dict[str, Any]  # model, sae, case files: the identity of every later request
    volumes: dict[str, Any]
    segmentation: Any  # the model's segmentation node (never modified)
    reference_segmentation: Any  # or None: Dice is shown against it
    table: LatentTable
    sae: dict[str, Any]  # sha256, layer, n_latents, kind
    steering: dict[str, Any]  # modes, strength_ranges, neutral, regions (from the worker)
    overlay: LatentOverlay
    preview: SteeringPreview


def node_ids(scene: Any) -> list[str]:
    """IDs of all nodes in the scene, in scene order."""
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def hierarchy_items(scene: Any) -> list[int]:
    """IDs of all subject-hierarchy items (patients, studies, data items) in the scene."""
    import slicer
    from vtkmodules.vtkCommonCore import vtkIdList

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    ids = vtkIdList()
    hierarchy.GetItemChildren(hierarchy.GetSceneItemID(), ids, True)
    return [ids.GetId(i) for i in range(ids.GetNumberOfIds())]


class ModuleLogic:
    """Runs the module's worker jobs one at a time; call `poll()` regularly while `running`.

    `start` runs a job now (refused while anything runs); `request` queues an
    interactive one (a latent map, a steering preview): a newer request of the
    same slot replaces a waiting one, and the result of a running one is dropped
    when a newer one waits, so fast slider moves never pile up work.
    """

    def __init__(self, scene: Any, worker: WorkerProcess, scene_api: ModuleType | None = None) -> None:
        self.scene = scene
        self.worker = worker
        self.scene_api = scene_api if scene_api is not None else importlib.import_module("MedSegLensLib.scene")
        self._active: _Job | None = None
        self._waiting: list[_Job] = []
        self._exported: dict[tuple, Path] = {}
        self.analysis: CaseAnalysis | None = None

    @property
    def running(self) -> bool:
        return self._active is not None or bool(self._waiting)

    def pending(self, slot: str) -> bool:
        """Whether a request of `slot` runs or waits."""
        return any(job.slot == slot for job in ([self._active] if self._active else []) + self._waiting)

    # -- jobs ----------------------------------------------------------------------

    def segment(
        self,
        volumes: Mapping[str, Any],
        model_dir: str | os.PathLike,
        callbacks: JobCallbacks | None = None,
        name: str | None = None,
    ) -> str:
        """Start segmenting the four modality volumes with the model folder; the result becomes a new node."""
        model_dir = _existing_folder(model_dir, "model", "'medseglens train'")
        reference = _reference_volume(volumes)
        name = name or f"{reference.GetName()} segmentation"
        params = self._case_params(volumes, model_dir)

        def on_result(data: dict[str, Any]) -> Any:
            return self._add_model_segmentation(data, volumes, name, {"job": "segment", "model_dir": str(model_dir)})

        return self.start("segment", params, callbacks or JobCallbacks(), on_result)

    def analyse(
        self,
        volumes: Mapping[str, Any],
        model_dir: str | os.PathLike,
        sae_dir: str | os.PathLike,
        callbacks: JobCallbacks | None = None,
        reference: Any = None,
        name: str | None = None,
        labels: str | None = None,
        populations: str | None = None,
    ) -> str:
        """Segment and encode the case in one pass: a new segmentation node plus the latent browser's rows.

        `reference`: a segmentation node to score steering previews against (Dice);
        `labels` / `populations`: latents.json / populations.json when not in the SAE folder.
        """
        model_dir = _existing_folder(model_dir, "model", "'medseglens train'")
        sae_dir = _existing_folder(sae_dir, "SAE", "'medseglens sae train'")
        reference_volume = _reference_volume(volumes)
        name = name or f"{reference_volume.GetName()} segmentation"
        params = {**self._case_params(volumes, model_dir), "sae": str(sae_dir)}
        extras = {key: value for key, value in (("labels", labels), ("populations", populations)) if value}

        def on_result(data: dict[str, Any]) -> Any:
            node = self._add_model_segmentation(
                data, volumes, name, {"job": "encode", "model_dir": str(model_dir), "sae_dir": str(sae_dir)}
            )
            case_name = str(data.get("case_id") or reference_volume.GetName())
            self.analysis = CaseAnalysis(
                params=params,
                volumes=dict(volumes),
                segmentation=node,
                reference_segmentation=reference,
                table=LatentTable.from_result(data, read_typical(Path(sae_dir) / TYPICAL_FILE)),
                sae=dict(data.get("sae") or {}),
                steering=dict(data.get("steering") or {}),
                overlay=LatentOverlay(self.scene, self.scene_api, reference_volume, case_name),
                preview=SteeringPreview(self.scene, self.scene_api, reference_volume, case_name),
            )
            return node

        return self.start("encode", {**params, **extras}, callbacks or JobCallbacks(), on_result)

    def show_latent(self, latent: int, callbacks: JobCallbacks | None = None) -> None:
        """Overlay one latent's map on the input (the overlay node is redrawn in place when stepping)."""
        analysis = self._require_analysis()
        if analysis.table.row(latent) is None:
            raise ParameterError(f"latent {latent} is not active in this case; pick one from the latent table")

        def on_result(data: dict[str, Any]) -> Any:
            volume = read_volume(data["map"])
            return analysis.overlay.show(volume.array, volume.grid, int(data["latent"]))

        self.request(
            "latent_map",
            "latent_map",
            {**analysis.params, "latent": int(latent)},
            callbacks or JobCallbacks(),
            on_result,
        )

    def set_overlay_threshold(self, threshold: float) -> None:
        """Overlay from `threshold` (the latent's activation units, 0..peak) up; no worker involved."""
        self._require_analysis().overlay.set_threshold(threshold)

    def set_overlay_style(self, style: str) -> Any:
        """ "volume" (colour-mapped foreground) or "labelmap" (voxels above the threshold); returns the node."""
        return self._require_analysis().overlay.set_style(style)

    def preview(self, steering: SteeringRequest, callbacks: JobCallbacks | None = None) -> None:
        """Steer in the worker and redraw the preview segmentation (a newer preview supersedes this one)."""
        analysis = self._require_analysis()
        mask = str(self._export_segmentation(steering.region_node, as_mask=True)) if steering.region == "mask" else None
        params = {**analysis.params, "spec": steering.spec(mask)}
        if analysis.reference_segmentation is not None:
            params["reference"] = str(self._export_segmentation(analysis.reference_segmentation, as_mask=False))

        def on_result(data: dict[str, Any]) -> Any:
            labels = read_volume(data["segmentation"], kind="label")
            extra = {"region_node": steering.region_node.GetName()} if steering.region_node is not None else {}
            outcome = SteeringOutcome(
                labels.array,
                labels.grid,
                data["provenance"],
                data["spec"],
                data.get("dice"),
                data.get("dice_unsteered"),
                int(data.get("changed_voxels", 0)),
                extra,
            )
            return analysis.preview.show(outcome, show_3d=self.scene_api.has_closed_surface(analysis.segmentation))

        self.request("steer", "steer", params, callbacks or JobCallbacks(), on_result)

    def set_preview_visible(self, visible: bool) -> None:
        self._require_analysis().preview.set_visible(visible)

    def accept(self, name: str | None = None) -> Any:
        """The latest preview as a NEW segmentation node with provenance; the model's node stays as it was."""
        analysis = self._require_analysis()
        if self.pending("steer"):
            raise ParameterError("the preview is still being computed; accept once it has finished")
        inputs = {m: analysis.volumes[m].GetName() for m in MODALITIES}
        return self._import_atomically(
            lambda _: analysis.preview.accept(analysis.segmentation, name, {"inputs": inputs}), {}
        )

    def export_segmentation(self, node: Any, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write a segmentation as .seg.nrrd, or as a NIfTI/NRRD labelmap on the input volume's grid."""
        reference = _reference_volume(self.analysis.volumes) if self.analysis is not None else None
        return self.scene_api.save_segmentation(node, path, reference_node=reference, overwrite=overwrite)

    def save_scene(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Save the whole scene (.mrb bundle, or a folder with .mrml and data)."""
        return self.scene_api.save_scene(self.scene, path, overwrite=overwrite)

    def load_case_folder(self, folder: str | os.PathLike) -> dict[str, Any]:
        """Load a BraTS case folder as volume nodes (and its `-seg` file as a reference segmentation)."""
        case = read_case(folder)

        def add_case() -> dict[str, Any]:
            nodes = self.scene_api.add_case_volumes(self.scene, case)
            loaded = dict(nodes.volumes)
            if case.label is not None:
                loaded["reference"] = self.scene_api.add_brats_segmentation(
                    self.scene, case.label, case.grid, nodes.reference, f"{case.case_id} reference", role="reference"
                )
            return loaded

        return self._import_atomically(lambda _: add_case(), {})

    def start(
        self, job: str, params: dict[str, Any], callbacks: JobCallbacks, on_result: Callable[[dict[str, Any]], Any]
    ) -> str:
        """Submit any worker job now; `on_result(data)` turns its result into scene content (then returns the node)."""
        if self.running:
            busy = self._active.job if self._active else self._waiting[0].job
            raise ParameterError(f"{busy!r} is still running; cancel it or wait for it to finish")
        self._active = _Job(job, params, callbacks, on_result)
        self._active.request_id = self.worker.submit(job, params)
        return self._active.request_id

    def request(
        self,
        slot: str,
        job: str,
        params: dict[str, Any],
        callbacks: JobCallbacks,
        on_result: Callable[[dict[str, Any]], Any],
    ) -> None:
        """Queue an interactive job; it replaces a waiting request of the same slot."""
        for waiting in [w for w in self._waiting if w.slot == slot]:
            self._waiting.remove(waiting)
            waiting.callbacks.superseded()
        self._waiting.append(_Job(job, params, callbacks, on_result, slot))
        self._submit_next()

    def cancel(self) -> None:
        """Kill the worker tree; running and waiting jobs report `cancelled`; the scene stays as it was."""
        waiting, self._waiting = self._waiting, []
        if self._active is not None:
            self.worker.cancel()
            self._pump()
        for job in waiting:
            job.callbacks.cancelled()

    def poll(self) -> None:
        """Pump worker messages into the callbacks and start the next waiting job (from a timer; never blocks)."""
        self._pump()
        self._submit_next()

    def wait(
        self, timeout: float = 600.0, interval: float = 0.05, process_events: Callable[[], None] = _ignore
    ) -> None:
        """Poll until every job has ended (scripts and tests; a GUI uses its timer instead)."""
        deadline = time.monotonic() + timeout
        while self.running:
            if time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError(f"the job did not finish within {timeout} s and was cancelled")
            process_events()
            self.poll()
            time.sleep(interval)

    def forget_case(self) -> None:
        """The scene is closing: stop every job and drop the analysed case and the files written for it."""
        self.cancel()
        self.analysis = None
        self._exported.clear()

    def shutdown(self) -> None:
        self.cancel()
        self.worker.close()
        self._exported.clear()

    # -- internals -----------------------------------------------------------------

    def _pump(self) -> None:
        for message in self.worker.poll():
            active = self._active
            if active is None or message.id != active.request_id:
                continue
            self._deliver(active, message)

    def _submit_next(self) -> None:
        if self._active is None and self._waiting:
            job = self._waiting.pop(0)
            self._active = job
            job.request_id = self.worker.submit(job.job, job.params)

    def _deliver(self, active: _Job, message: Message) -> None:
        callbacks = active.callbacks
        if message.type == "progress":
            callbacks.progress(message.fraction, message.message)
        elif message.type == "log":
            callbacks.log(message.message)
        elif message.type == "cancelled":
            self._active = None
            callbacks.cancelled()
        elif message.type == "error":
            self._active = None
            callbacks.failed(message.message)
        elif message.type == "result":
            self._active = None
            try:
                if active.slot is not None and any(w.slot == active.slot for w in self._waiting):
                    callbacks.superseded()
                    return
                node = self._import_atomically(active.on_result, message.data)
            except Exception as exc:  # a result that cannot be imported must not half-change the scene
                text = str(exc) if isinstance(exc, MedSegLensError) else f"{type(exc).__name__}: {exc}"
                callbacks.failed(one_line(text))
            else:
                callbacks.finished(node)
            finally:
                self.worker.release(active.request_id)

    def _import_atomically(self, on_result: Callable[[dict[str, Any]], Any], data: dict[str, Any]) -> Any:
        """Run `on_result`; if it fails, remove every node and hierarchy item it added."""
        nodes_before, items_before = set(node_ids(self.scene)), set(hierarchy_items(self.scene))
        try:
            return on_result(data)
        except BaseException:
            self._roll_back(nodes_before, items_before)
            raise

    def _roll_back(self, nodes_before: set[str], items_before: set[int]) -> None:
        for node_id in reversed(node_ids(self.scene)):
            node = self.scene.GetNodeByID(node_id)
            if node_id not in nodes_before and node is not None:
                self.scene_api.remove_node(self.scene, node)
        import slicer

        hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        for item in reversed(hierarchy_items(self.scene)):
            if item not in items_before and item in hierarchy_items(self.scene):
                hierarchy.RemoveItem(item, False, True)  # never a data node that was there before

    def _require_analysis(self) -> CaseAnalysis:
        if self.analysis is None:
            raise ParameterError("run the model with an SAE first (Apply with an SAE folder)")
        return self.analysis

    def _case_params(self, volumes: Mapping[str, Any], model_dir: Path) -> dict[str, Any]:
        files = {m: str(self._export(volumes[m])) for m in MODALITIES}
        return {"model": str(model_dir), "case": files, "case_id": volumes[MODALITIES[0]].GetName()}

    def _add_model_segmentation(
        self, data: dict[str, Any], volumes: Mapping[str, Any], name: str, extra: dict[str, Any]
    ) -> Any:
        labels = read_volume(data["segmentation"], kind="label")
        node = self.scene_api.add_brats_segmentation(
            self.scene, labels.array, labels.grid, volumes[MODALITIES[0]], name
        )
        model, sae = data.get("model") or {}, data.get("sae") or {}
        self.scene_api.attach_provenance(
            node,
            self.scene_api.Provenance(
                latents=[],
                strengths=[],
                mode="none",
                model_sha256=str(model.get("fingerprint", "")),
                sae_sha256=sae.get("sha256"),
                layer=sae.get("layer"),
                extra={
                    **extra,
                    "architecture": model.get("architecture"),
                    "inputs": {m: volumes[m].GetName() for m in MODALITIES},
                },
            ),
        )
        return node

    def _export(self, node: Any, kind: str = "volume", to_array: Callable[[Any], tuple] | None = None) -> Path:
        """Write a node for the worker once per content version (the worker caches by file).

        Volumes are written as they are; other nodes through `to_array(node) -> (array, grid)`.
        """
        key = (node.GetID(), kind, node.GetMTime(), _content_version(node))
        path = self._exported.get(key)
        if path is not None and path.exists():
            return path
        folder = self.worker.session_dir / "inputs"
        folder.mkdir(parents=True, exist_ok=True)
        array, grid = self.scene_api.node_array(node) if to_array is None else to_array(node)
        path = write_volume(array, grid, folder / f"{len(self._exported):04d}-{_safe_name(node.GetID())}.nii.gz")
        self._exported[key] = path
        return path

    def _export_segmentation(self, node: Any, as_mask: bool) -> Path:
        """A segmentation as a label file on the input volume's grid: BraTS labels, or any segment as a 0/1 mask."""
        grid = self.scene_api.node_grid(_reference_volume(self._require_analysis().volumes))
        if as_mask:
            return self._export(node, "mask", lambda n: (segmentation_mask(n, grid), grid))
        return self._export(node, "labels", lambda n: (self.scene_api.segmentation_to_labels(n, grid), grid))


def _content_version(node: Any) -> tuple:
    """Modification times of a node's voxels (volume) or of its segments' data (segmentation)."""
    if hasattr(node, "GetImageData"):
        image = node.GetImageData()
        return (image.GetMTime() if image is not None else 0,)
    segmentation = node.GetSegmentation()
    versions = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetSegment(segmentation.GetNthSegmentID(index))
        data = segment.GetRepresentation(segmentation.GetSourceRepresentationName())
        versions.append((segment.GetMTime(), data.GetMTime() if data is not None else 0))
    return (segmentation.GetMTime(), tuple(versions))


def _existing_folder(folder: str | os.PathLike, what: str, made_by: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise ParameterError(f"{folder}: the {what} folder does not exist; pick a folder made by {made_by}")
    return folder


def _reference_volume(volumes: Mapping[str, Any]) -> Any:
    """The first modality's node: its geometry is the one every output takes."""
    missing = [m for m in MODALITIES if volumes.get(m) is None]
    if missing:
        raise ParameterError(f"select a volume for {', '.join(missing)}: the model needs {', '.join(MODALITIES)}")
    return volumes[MODALITIES[0]]


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
