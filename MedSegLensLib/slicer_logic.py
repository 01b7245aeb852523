"""The Slicer module's logic without Qt: scene in, a worker job, scene out.

`ModuleLogic` takes its collaborators as parameters (the MRML scene, a
`WorkerProcess`, the scene functions: `MedSegLensLib.scene` unless the caller
gives another implementation), so the same code runs in desktop Slicer,
where the widget pumps `poll()` from a `qt.QTimer`, and in pytest with a real
slicer-core scene and a real worker subprocess. Nothing is added to the scene
until a job's result has arrived and imported completely: a cancelled, failed
or crashed job leaves the scene exactly as it was.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .data import MODALITIES, read_case, read_volume, write_volume
from .errors import MedSegLensError, ParameterError
from .worker.client import WorkerProcess
from .worker.protocol import Message, one_line


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


@dataclass
class _ActiveJob:
    request_id: str
    job: str
    callbacks: JobCallbacks
    on_result: Callable[[dict[str, Any]], Any]
    started: float = field(default_factory=time.monotonic)


def node_ids(scene: Any) -> list[str]:
    """IDs of all nodes in the scene, in scene order."""
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


class ModuleLogic:
    """Runs one job at a time for the module; call `poll()` regularly while `running`."""

    def __init__(self, scene: Any, worker: WorkerProcess, scene_api: ModuleType | None = None) -> None:
        self.scene = scene
        self.worker = worker
        self.scene_api = scene_api if scene_api is not None else importlib.import_module("MedSegLensLib.scene")
        self._active: _ActiveJob | None = None
        self._exported: dict[tuple, Path] = {}

    @property
    def running(self) -> bool:
        return self._active is not None

    # -- jobs ----------------------------------------------------------------------

    def segment(self, volumes: Mapping[str, Any], model_dir: str | os.PathLike, callbacks: JobCallbacks | None = None,
                name: str | None = None) -> str:
        """Start segmenting the four modality volumes with the model folder; the result becomes a new node."""
        missing = [m for m in MODALITIES if volumes.get(m) is None]
        if missing:
            raise ParameterError(f"select a volume for {', '.join(missing)}: the model needs {', '.join(MODALITIES)}")
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise ParameterError(f"{model_dir}: the model folder does not exist; pick a folder made by 'medseglens train'")
        reference = volumes[MODALITIES[0]]
        name = name or f"{reference.GetName()} segmentation"
        files = {m: str(self._export(volumes[m])) for m in MODALITIES}
        params = {"model": str(model_dir), "case": files, "case_id": reference.GetName()}

        def on_result(data: dict[str, Any]) -> Any:
            labels = read_volume(data["segmentation"], kind="label")
            node = self.scene_api.add_brats_segmentation(self.scene, labels.array, labels.grid, reference, name)
            model = data.get("model") or {}
            self.scene_api.attach_provenance(node, self.scene_api.Provenance(
                latents=[], strengths=[], mode="none", model_sha256=str(model.get("fingerprint", "")),
                extra={"job": "segment", "model_dir": str(model_dir), "architecture": model.get("architecture"),
                       "inputs": {m: volumes[m].GetName() for m in MODALITIES}},
            ))
            return node

        return self.start("segment", params, callbacks or JobCallbacks(), on_result)

    def load_case_folder(self, folder: str | os.PathLike) -> dict[str, Any]:
        """Load a BraTS case folder as volume nodes (and its `-seg` file as a reference segmentation)."""
        case = read_case(folder)

        def add_case() -> dict[str, Any]:
            nodes = self.scene_api.add_case_volumes(self.scene, case)
            loaded = dict(nodes.volumes)
            if case.label is not None:
                loaded["reference"] = self.scene_api.add_brats_segmentation(
                    self.scene, case.label, case.grid, nodes.reference, f"{case.case_id} reference", role="reference")
            return loaded

        return self._import_atomically(lambda _: add_case(), {})

    def start(self, job: str, params: dict[str, Any], callbacks: JobCallbacks,
              on_result: Callable[[dict[str, Any]], Any]) -> str:
        """Submit any worker job; `on_result(data)` turns its result into scene content (then returns the node)."""
        if self._active is not None:
            raise ParameterError(f"{self._active.job!r} is still running; cancel it or wait for it to finish")
        request_id = self.worker.submit(job, params)
        self._active = _ActiveJob(request_id, job, callbacks, on_result)
        return request_id

    def cancel(self) -> None:
        """Kill the worker tree; the active job reports `cancelled` and the scene stays as it was."""
        if self._active is not None:
            self.worker.cancel()
            self.poll()

    def poll(self) -> None:
        """Pump worker messages into the callbacks (call from a timer; never blocks)."""
        for message in self.worker.poll():
            active = self._active
            if active is None or message.id != active.request_id:
                continue
            self._deliver(active, message)

    def wait(self, timeout: float = 600.0, interval: float = 0.05, process_events: Callable[[], None] = _ignore) -> None:
        """Poll until the active job ends (scripts and tests; a GUI uses its timer instead)."""
        deadline = time.monotonic() + timeout
        while self.running:
            if time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError(f"the job did not finish within {timeout} s and was cancelled")
            process_events()
            self.poll()
            time.sleep(interval)

    def shutdown(self) -> None:
        self.cancel()
        self.worker.close()
        self._exported.clear()

    # -- internals -----------------------------------------------------------------

    def _deliver(self, active: _ActiveJob, message: Message) -> None:
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
                node = self._import_atomically(active.on_result, message.data)
            except Exception as exc:  # a result that cannot be imported must not half-change the scene
                callbacks.failed(one_line(str(exc) if isinstance(exc, MedSegLensError) else f"{type(exc).__name__}: {exc}"))
            else:
                callbacks.finished(node)
            finally:
                self.worker.release(active.request_id)

    def _import_atomically(self, on_result: Callable[[dict[str, Any]], Any], data: dict[str, Any]) -> Any:
        """Run `on_result`; if it fails, remove every node (and hierarchy item) it added."""
        before = set(node_ids(self.scene))
        try:
            return on_result(data)
        except BaseException:
            for node_id in reversed(node_ids(self.scene)):
                node = self.scene.GetNodeByID(node_id)
                if node_id not in before and node is not None:
                    self.scene_api.remove_node(self.scene, node)
            raise

    def _export(self, node: Any) -> Path:
        """Write a volume node for the worker once per content version (the worker caches by file)."""
        image = node.GetImageData() if hasattr(node, "GetImageData") else None
        key = (node.GetID(), node.GetMTime(), image.GetMTime() if image is not None else 0)
        path = self._exported.get(key)
        if path is not None and path.exists():
            return path
        folder = self.worker.session_dir / "inputs"
        folder.mkdir(parents=True, exist_ok=True)
        array, grid = self.scene_api.node_array(node)
        path = write_volume(array, grid, folder / f"{len(self._exported):04d}-{_safe_name(node.GetID())}.nii.gz")
        self._exported[key] = path
        return path


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def reload_library(package: str = "MedSegLensLib") -> list[str]:
    """Reload every loaded module of `package`, deepest first (the module's `onReload`)."""
    names = sorted((n for n in sys.modules if n == package or n.startswith(package + ".")),
                   key=lambda n: (-n.count("."), n))
    for name in names:
        importlib.reload(sys.modules[name])
    return names
