"""Saving and loading whole scenes: a .mrb bundle or a scene folder (.mrml plus Data/).

Both are what desktop Slicer writes and reads: every storable node (volumes,
segmentations, colour tables, overlays) is written by its storage node, and
node attributes (provenance, roles) are part of the .mrml file.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import slicer
from vtkmodules.vtkCommonCore import vtkCommand

from ..errors import InputError, OutputError
from ..fileio import atomic_directory, check_can_write, ensure_parent

BUNDLE_SUFFIX = ".mrb"


def _messages():
    return slicer.vtkMRMLMessageCollection()


def _errors(messages) -> str:
    if messages.GetNumberOfMessagesOfType(vtkCommand.ErrorEvent) == 0:
        return ""
    return " ".join(messages.GetAllMessagesAsString().split())[:200]


def save_scene(scene, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save the scene as `path`.mrb, or as a scene folder `path` holding `<name>.mrml` and Data/.

    Returns the .mrb file or the .mrml file written.
    """
    path = Path(path)
    if path.suffix.lower() == BUNDLE_SUFFIX:
        return _save_bundle(scene, path, overwrite)
    if path.suffix.lower() == ".mrml":
        raise OutputError(
            f"{path}: give a folder for the scene (it will hold {path.stem}.mrml and Data/) or a .mrb file"
        )
    with atomic_directory(path, overwrite=overwrite) as folder:
        messages = _messages()
        if not scene.SaveSceneToSlicerDataBundleDirectory(str(folder.resolve()), None, messages):
            raise OutputError(f"{path}: Slicer could not save the scene ({_errors(messages) or 'no reason given'})")
        (written,) = [p for p in folder.iterdir() if p.name.endswith(".mrml")]  # named after the temporary folder
        written.rename(folder / f"{path.name}.mrml")
    return path / f"{path.name}.mrml"


def _save_bundle(scene, path: Path, overwrite: bool) -> Path:
    check_can_write(path, overwrite)
    ensure_parent(path)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as work:
        staged = Path(work) / path.name
        messages = _messages()
        if not scene.WriteToMRB(str(staged.resolve()), None, messages) or not staged.is_file():
            raise OutputError(
                f"{path}: Slicer could not write the scene bundle ({_errors(messages) or 'no reason given'})"
            )
        os.replace(staged, path)
    return path


def load_scene(scene, path: str | os.PathLike) -> None:
    """Add the nodes of a .mrb bundle or .mrml file to `scene` (nothing already there is removed)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: scene file not found")
    if path.suffix.lower() == BUNDLE_SUFFIX:
        if not zipfile.is_zipfile(path):
            raise InputError(f"{path}: not a readable Slicer scene bundle (.mrb is a zip archive)")
        with tempfile.TemporaryDirectory(prefix="medseglens-mrb-") as work:
            mrml = _unpack(scene, path, work)
            _import(scene, Path(mrml), shown_as=path)
            _forget_unpacked_files(scene, work)
    elif path.suffix.lower() == ".mrml":
        _import(scene, path, shown_as=path)
    else:
        raise InputError(f"{path}: not a Slicer scene; expected .mrb or .mrml")


def _unpack(scene, path: Path, folder: str) -> str:
    """Unzip a bundle with Slicer; it changes the working folder and may not change it back on failure."""
    cwd = os.getcwd()
    try:
        mrml = scene.UnpackSlicerDataBundle(str(path.resolve()), folder)
    finally:
        os.chdir(cwd)
    if not mrml:
        raise InputError(f"{path}: not a readable Slicer scene bundle (.mrb)")
    return mrml


def _import(scene, mrml: Path, shown_as: Path) -> None:
    previous = scene.GetURL() or "", scene.GetRootDirectory() or ""
    messages = _messages()
    scene.SetURL(str(mrml.resolve()))
    scene.SetRootDirectory(str(mrml.resolve().parent))
    try:
        ok = scene.Import(messages)
    finally:
        scene.SetURL(previous[0])
        scene.SetRootDirectory(previous[1])
    error = _errors(messages)
    if not ok or error:
        raise InputError(f"{shown_as}: scene could not be loaded ({error or 'no reason given'})")


def _forget_unpacked_files(scene, folder: str) -> None:
    """Storage nodes must not point into the deleted unpack folder; Slicer re-asks on the next save."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLStorageNode")):
        storage = scene.GetNthNodeByClass(index, "vtkMRMLStorageNode")
        name = storage.GetFileName() or ""
        if name.startswith(str(Path(folder).resolve())) or name.startswith(folder):
            storage.ResetFileNameList()
            storage.SetFileName("")
