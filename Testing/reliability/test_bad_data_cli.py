"""Bad images, cases, cohorts and output folders through the real CLI: one line, non-zero, nothing left behind.

The in-process tests (Testing/test_data_validation.py, test_data_fuzz.py) check the readers' messages; here
every bad input goes through `medseglens check | cases | metrics` in a fresh process. Each parameter is one
bad input; the files are made by the test. Commands run in one process per module (see cli_batch.py) except
those that need resource limits (memory cap, file-size cap), which get their own `python -m MedSegLensLib`.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from datafiles import affine, smooth_image, tumour_labels, write_case, write_nifti
from reliability_support import (
    assert_refused,
    build_corpus,
    check_refusal,
    leftovers,
    run_cli,
    run_corpus,
    snapshot,
)

SHAPE = (16, 18, 14)


def _case(root: Path, suffix: str = ".nii.gz") -> dict:
    return write_case(root, "c", np.random.default_rng(0), shape=SHAPE, suffix=suffix)


def _check(written: dict) -> list:
    return ["check", "--case", written["folder"]]


def _replace(role: str, payload, suffix: str = ".nii.gz"):
    """A case whose `role` file is replaced by `payload(original_bytes, rng)`."""

    def build(root: Path):
        written = _case(root, suffix)
        path = written["paths"][role]
        path.write_bytes(payload(path.read_bytes()))
        return _check(written), [path]

    return build


def _rewrite(role: str, array_of, aff=None):
    """A case whose `role` file is rewritten (same name) with another array or affine."""

    def build(root: Path):
        written = _case(root)
        path = written["paths"][role]
        write_nifti(path, array_of(written), affine() if aff is None else aff)
        return _check(written), [path]

    return build


def _flip_middle(data: bytes) -> bytes:
    middle = bytearray(data)
    for offset in range(len(middle) // 2, len(middle) // 2 + 16):
        middle[offset] ^= 0xA5
    return bytes(middle)


def _zipped(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("scan.nii", data)
    return buffer.getvalue()


def _with(array_of, index, value):
    def change(written):
        array = array_of(written).copy()
        array[index] = value
        return array

    return change


def _missing_modality(root: Path):
    written = _case(root)
    written["paths"]["t2f"].unlink()
    return _check(written), [written["folder"], "t2f"]


def _nrrd_data_outside(root: Path):
    written = _case(root, ".nhdr")
    header = written["paths"]["t1c"]
    text = header.read_text()
    data_name = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("data file"))
    header.write_text(text.replace(f"data file: {data_name}", "data file: ../../secret.raw"))
    (root / "secret.raw").write_bytes(b"\0" * 4 * int(np.prod(SHAPE)))
    return _check(written), [header, "outside"]


def _case_id_traversal(root: Path):
    written = _case(root)
    return [*_check(written), "--case-id", "../escape"], ["../escape"]


def _file_as_case(root: Path):
    written = _case(root)
    return ["check", "--case", written["paths"]["t1n"]], [written["paths"]["t1n"]]


def _manifest(text: str | bytes, *words, names_manifest: bool = True):
    def build(root: Path):
        _case(root / "cohort")
        manifest = root / "cohort" / "manifest.csv"
        manifest.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["cases", root / "cohort"], [manifest if names_manifest else root / "cohort", *words]

    return build


_ROW = "c/c-t1n.nii.gz,c/c-t1c.nii.gz,c/c-t2w.nii.gz,c/c-t2f.nii.gz"
_HEAD = "case_id,t1n,t1c,t2w,t2f\n"


def _metrics_pred(array_of, *words):
    def build(root: Path):
        written = _case(root)
        pred = write_nifti(root / "pred.nii.gz", array_of(written), affine())
        return ["metrics", "--pred", pred, "--ref", written["paths"]["seg"], "--out", root / "m.csv"], [pred, *words]

    return build


def _metrics_existing_out(root: Path):
    written = _case(root)
    out = root / "m.csv"
    out.write_text("the user's own table\n")
    return ["metrics", "--pred", written["paths"]["seg"], "--ref", written["paths"]["seg"], "--out", out], [
        out,
        "already exists",
        "--overwrite",
    ]


def _metrics_into_read_only(root: Path):
    written = _case(root)
    (root / "locked").mkdir()
    return [
        "metrics",
        "--pred",
        written["paths"]["seg"],
        "--ref",
        written["paths"]["seg"],
        "--out",
        root / "locked" / "m.csv",
    ], [root / "locked" / "m.csv", "permission denied"]


CORPUS = {
    "truncated .nii.gz": _replace("t1c", lambda d: d[: len(d) // 2]),
    "truncated .nrrd": _replace("t2w", lambda d: d[: len(d) // 2], ".nrrd"),
    "corrupt gzip stream": _replace("t1n", _flip_middle),
    "empty file": _replace("t2f", lambda d: b""),
    "wrong magic .nii.gz (gzipped text)": _replace("t1c", lambda d: gzip.compress(b"patient notes\n" * 50)),
    "wrong magic .nrrd (a PNG)": _replace("t2w", lambda d: b"\x89PNG\r\n\x1a\n" + d[8:], ".nrrd"),
    "wrong magic .nii (a zip archive)": _replace("t1n", lambda d: _zipped(d), ".nii"),
    "2D image": _rewrite("t1n", lambda w: w["arrays"]["t1n"][:, :, 0]),
    "4D image": _rewrite("t1c", lambda w: np.stack([w["arrays"]["t1c"]] * 3, axis=-1)),
    "grid of another modality elsewhere": _rewrite("t2w", lambda w: w["arrays"]["t2w"], affine(origin=(400, 0, 0))),
    "missing modality": _missing_modality,
    "NaN voxel": _rewrite("t2f", _with(lambda w: w["arrays"]["t2f"], (1, 2, 3), np.nan)),
    "Inf voxel": _rewrite("t1n", _with(lambda w: w["arrays"]["t1n"], (4, 4, 4), np.inf)),
    "all-zero modality": _rewrite("t1c", lambda w: np.zeros(SHAPE, np.float32)),
    "absurd spacing (1 m voxels)": _rewrite("t1n", lambda w: w["arrays"]["t1n"], affine((1000.0, 1.0, 1.0))),
    "absurd spacing (0.1 µm voxels)": _rewrite("t2w", lambda w: w["arrays"]["t2w"], affine((1e-4, 1.0, 1.0))),
    "label 5": _rewrite("seg", _with(lambda w: w["labels"], (0, 0, 0), 5)),
    "negative label": _rewrite("seg", _with(lambda w: w["labels"].astype(np.int16), (0, 0, 0), -1)),
    "fractional labels": _rewrite("seg", lambda w: w["labels"].astype(np.float32) * 0.5),
    "NRRD data file outside its folder (../)": _nrrd_data_outside,
    "case id with ../": _case_id_traversal,
    "a file given as a case folder": _file_as_case,
    "manifest path with ../": _manifest(_HEAD + "c," + _ROW.replace("c/c-t2w", "../../etc/c-t2w") + "\n", "outside"),
    "manifest absolute path": _manifest(_HEAD + "c," + _ROW.replace("c/c-t1n", "/etc/passwd") + "\n", "outside"),
    "manifest case id ../x": _manifest(_HEAD + "../x," + _ROW + "\n", "../x"),
    "manifest duplicate case ids": _manifest(
        _HEAD + "c," + _ROW + "\nc," + _ROW + "\n", "more than once", names_manifest=False
    ),
    "manifest in Latin-1": _manifest((_HEAD + "Élodie," + _ROW + "\n").encode("latin-1"), "UTF-8"),
    "manifest missing columns": _manifest("case_id,t1n\nc,c/c-t1n.nii.gz\n", "lacks"),
    "prediction label 9": _metrics_pred(_with(lambda w: w["labels"], (0, 0, 0), 9)),
    "prediction on another grid": _metrics_pred(lambda w: tumour_labels((9, 9, 9))),
    "existing output without --overwrite": _metrics_existing_out,
    "read-only output folder": _metrics_into_read_only,
}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    """Build every bad input in a folder of its own, snapshot it, run all commands in one fresh process."""
    base = tmp_path_factory.mktemp("bad-data")
    plans = build_corpus(CORPUS, base)
    results, _ = run_corpus(plans, base, read_only_folders=[plans["read-only output folder"][0] / "locked"])
    return results


@pytest.mark.parametrize("name", list(CORPUS))
def test_bad_input_is_refused_in_one_line_and_leaves_no_trace(refusals, name):
    check_refusal(refusals, name)


def test_unicode_names_are_fine(tmp_path):
    """Not a bad input: non-ASCII case names and folders work end to end (control for the refusals above)."""
    written = write_case(tmp_path / "données", "Élodie-脑-01", np.random.default_rng(1), shape=SHAPE)
    run = run_cli("check", "--case", written["folder"])
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Élodie-脑-01: ") and run.stderr == ""


HUGE_NIFTI_DIMS = (30000, 30000, 30000)


def _huge_nifti(root: Path) -> Path:
    path = write_nifti(root / "huge.nii", smooth_image((4, 4, 4), np.random.default_rng(0)), affine())
    data = bytearray(path.read_bytes())
    struct.pack_into("<hhh", data, 42, *HUGE_NIFTI_DIMS)
    path.write_bytes(bytes(data))
    return path


def _huge_nrrd(root: Path) -> Path:
    path = root / "huge.nrrd"
    path.write_bytes(
        b"NRRD0004\ntype: float\ndimension: 3\nsizes: 100000 100000 100000\nencoding: raw\n"
        b"endian: little\nspace: left-posterior-superior\n\n" + b"\0" * 64
    )
    return path


@pytest.mark.parametrize("make", [_huge_nifti, _huge_nrrd], ids=["nifti 30000^3", "nrrd 100000^3"])
def test_huge_declared_dimensions_fail_under_a_memory_cap(tmp_path, make):
    """A process capped at 3 GiB of address space still gives the one-line error: nothing was allocated."""
    path = make(tmp_path)
    folder = tmp_path / "case"
    folder.mkdir()
    files = []
    for role in ("t1n", "t1c", "t2w", "t2f"):
        target = folder / f"case-{role}{''.join(path.suffixes)}"
        os.link(path, target)
        files.append(target)
    run = run_cli("check", "--case", folder, address_space=3 << 30)
    assert_refused(run, files[0], "header declares")


def test_full_disk_leaves_no_partial_output(tmp_path):
    """Writes past a 64 KiB file-size limit fail (EFBIG), as on a full disk: one line, no partial CSV."""
    written = _case(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # a big CSV: many prediction files against one reference folder layout
    preds = tmp_path / "preds"
    refs = tmp_path / "refs"
    for number in range(60):
        for folder, name in (
            (preds, f"case-{number:03d}.nii.gz"),
            (refs, f"case-{number:03d}/case-{number:03d}-seg.nii.gz"),
        ):
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(written["paths"]["seg"], target)
    before = snapshot(out_dir)
    run = run_cli("metrics", "--pred", preds, "--ref", refs, "--out", out_dir / "m.csv", "--no-hd95", file_size=4096)
    assert_refused(run, out_dir / "m.csv", "cannot write")
    assert leftovers(out_dir, before) == []
