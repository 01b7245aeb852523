"""Atomic outputs get the permissions a plain open()/mkdir() would give, not mkstemp's 0600 / mkdtemp's 0700."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from MedSegLensLib.data import Grid, write_volume
from MedSegLensLib.fileio import atomic_directory, atomic_path, write_json_atomic


@pytest.fixture(params=[0o022, 0o027, 0o077], ids=lambda m: f"umask {m:03o}")
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_and_folders_get_what_open_and_mkdir_would_give(tmp_path, umask):
    with open(tmp_path / "plain.txt", "w"):
        pass
    (tmp_path / "plain-dir").mkdir()
    write_json_atomic(tmp_path / "atomic.json", {"a": 1})
    write_volume(np.ones((3, 3, 3), np.float32), Grid((3, 3, 3), np.eye(4)), tmp_path / "vol.nii.gz")
    with atomic_directory(tmp_path / "atomic-dir") as folder:
        (folder / "inside.txt").write_text("x")
    assert mode(tmp_path / "atomic.json") == mode(tmp_path / "plain.txt") == 0o666 & ~umask
    assert mode(tmp_path / "vol.nii.gz") == 0o666 & ~umask
    assert mode(tmp_path / "atomic-dir") == mode(tmp_path / "plain-dir") == 0o777 & ~umask


def test_a_replaced_file_or_folder_keeps_its_mode(tmp_path):
    target = tmp_path / "shared.json"
    target.write_text("{}")
    os.chmod(target, 0o640)
    with atomic_path(target) as tmp:
        tmp.write_text('{"new": true}')
    assert mode(target) == 0o640 and "new" in target.read_text()
    folder = tmp_path / "group-folder"
    folder.mkdir()
    os.chmod(folder, 0o750)
    with atomic_directory(folder, overwrite=True) as tmp:
        (tmp / "x").write_text("1")
    assert mode(folder) == 0o750 and (folder / "x").exists()
