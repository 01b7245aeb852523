"""Writing a synthetic cohort folder: cases, manifest, record, montage, licence.

The folder is built under a temporary name and published with one rename, so
it appears complete or not at all; an existing folder is only replaced with
`overwrite`. `ensure_cohort` is the resumable form the pipeline and the
benchmarks use: a folder with its manifest is kept, anything else is rebuilt.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data import CaseFiles, write_manifest, write_volume
from ..data.case import MODALITIES
from ..data.cohort import MANIFEST_CSV
from ..errors import ParameterError
from ..fileio import atomic_directory, write_json_atomic, write_text_atomic
from .generator import SyntheticCase, case_seed, synthesize_case
from .location_atlas import ATLAS_LABELS
from .montage import write_montage
from .populations import DEFAULT_SEVERITY, population_shift
from .template_source import SOURCES, ensure_template_files
from .templates import check_spacing, load_templates

GENERATOR_VERSION = 1
MAX_CASES = 10_000
MONTAGE_CASES = 4
CASE_CODES = {"adult": "ADU", "pediatric": "PED", "ssa": "SSA", "met": "MET", "healthy": "HLT"}
RECORD = "synth.json"
MONTAGE = "montage.png"
ATLAS_TABLE = "atlas_labels.csv"
LICENCE = "LICENSE-MNI-ICBM152.txt"


@dataclass(frozen=True)
class CohortSummary:
    folder: Path
    case_ids: list[str]
    seconds_per_case: float


def case_id(population: str, seed: int, index: int) -> str:
    return f"SYN-{CASE_CODES[population]}-{seed}-{index:05d}"


def generate_cohort(
    population: str,
    cases: int,
    seed: int,
    out: str | os.PathLike,
    spacing: float = 2.0,
    severity: float = DEFAULT_SEVERITY,
    overwrite: bool = False,
    progress: bool = True,
) -> CohortSummary:
    """Generate `cases` cases of `population` into the new folder `out` (BraTS 2023 naming)."""
    shift = population_shift(population, severity)
    spacing = check_spacing(spacing)
    if not (1 <= int(cases) <= MAX_CASES) or int(cases) != cases:
        raise ParameterError(f"--cases {cases}: give a whole number from 1 to {MAX_CASES}")
    if int(seed) != seed or seed < 0:
        raise ParameterError(f"--seed {seed}: give a non-negative whole number")
    templates = load_templates(spacing)
    out = Path(out)
    start = time.perf_counter()
    records, shown, manifest = [], [], []
    with atomic_directory(out, overwrite=overwrite) as folder:
        for index in tqdm(range(int(cases)), desc=f"synth {population}", unit="case", disable=not progress):
            name = case_id(population, int(seed), index)
            case = synthesize_case(name, shift, templates, case_seed(int(seed), population, index))
            manifest.append(_write_case(case, folder / name, population))
            records.append({"case_id": name, **case.info})
            if len(shown) < MONTAGE_CASES:
                shown.append(case)
        elapsed = (time.perf_counter() - start) / int(cases)
        write_manifest(folder, manifest)
        write_json_atomic(
            folder / RECORD,
            {
                "generator_version": GENERATOR_VERSION,
                "population": population,
                "severity": float(severity),
                "seed": int(seed),
                "cases": int(cases),
                "spacing_mm": spacing,
                "templates": [f"{s.package}=={s.version}" for s in SOURCES],
                "parameters": dataclasses.asdict(shift),
                "case_records": records,
            },
        )
        write_text_atomic(folder / ATLAS_TABLE, "label,name\n" + "".join(f"{k},{v}\n" for k, v in ATLAS_LABELS.items()))
        shutil.copyfile(ensure_template_files() / "COPYING", folder / LICENCE)
        write_montage(shown, folder / MONTAGE)
    return CohortSummary(out, [r["case_id"] for r in records], elapsed)


Guard = Callable[[Path, Callable[[], bool]], AbstractContextManager[bool]]


@contextmanager
def _alone(folder: Path, done: Callable[[], bool]):
    """The guard of a single caller: build unless done."""
    yield not done()


def ensure_cohort(
    folder: str | os.PathLike,
    population: str,
    cases: int,
    seed: int,
    spacing: float = 2.0,
    severity: float = DEFAULT_SEVERITY,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    guard: Guard = _alone,
) -> bool:
    """Make `folder` hold the cohort `generate_cohort` gives for these arguments; True when this call generated it.

    A folder with its manifest is complete and kept (`generate_cohort` publishes the folder whole, so only an
    older or foreign folder can lack it), so a rerun reuses a finished cohort; anything else is rebuilt in
    its place. Callers that run
    concurrently on one folder pass a `guard(folder, done)`: a context manager yielding True to the one
    caller that should build and False once `done()` (e.g. `processes.exclusive`, the steering benchmark's lock).
    """
    folder = Path(folder)
    with guard(folder, lambda: (folder / MANIFEST_CSV).is_file()) as build:
        if not build:
            return False
        if log is not None:
            log(f"synth {folder.name}: {cases} {population} cases, seed {seed}")
        generate_cohort(
            population, cases, seed, folder, spacing=spacing, severity=severity, overwrite=True, progress=progress
        )
        return True


def _write_case(case: SyntheticCase, folder: Path, population: str) -> CaseFiles:
    paths = {}
    for name in MODALITIES:
        paths[name] = write_volume(
            np.rint(case.images[name]), case.grid, folder / f"{case.case_id}-{name}.nii.gz", dtype=np.int16
        )
    maps = {
        role: write_volume(getattr(case, role), case.grid, folder / f"{case.case_id}-{suffix}.nii.gz", dtype=np.uint8)
        for role, suffix in (("label", "seg"), ("tissue", "tissue"), ("atlas", "atlas"))
    }
    return CaseFiles(
        case_id=case.case_id,
        modalities={k: str(v) for k, v in paths.items()},
        seg=str(maps["label"]),
        tissue=str(maps["tissue"]),
        atlas=str(maps["atlas"]),
        population=population,
    )
