"""`medseglens cases` (list a cohort, optionally validate it or write its manifest)
and `medseglens check` (read and validate one case)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data import LABEL_NAMES, Case, discover_cohorts, write_manifest
from ..data.cohort import MANIFEST_CSV
from ..errors import ParameterError
from ..fileio import check_can_write
from .case_args import add_case_arguments, case_files_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    cases = subparsers.add_parser("cases", help="list the cases of cohort folders")
    cases.add_argument("folders", nargs="+", help="cohort folders (with a manifest or BraTS case sub-folders)")
    cases.add_argument("--check", action="store_true", help="also read every file and validate it")
    cases.add_argument("--write-manifest", action="store_true", help=f"write {MANIFEST_CSV} into the (single) folder")
    cases.add_argument("--overwrite", action="store_true", help="replace an existing manifest")
    cases.set_defaults(handler=run_cases)

    check = subparsers.add_parser("check", help="read and validate one case; print its geometry and labels")
    add_case_arguments(check)
    check.set_defaults(handler=run_check)


def run_cases(args: argparse.Namespace) -> int:
    cases = discover_cohorts(args.folders)
    if args.write_manifest:
        if len(args.folders) != 1:
            raise ParameterError("--write-manifest needs exactly one cohort folder")
        check_can_write(Path(args.folders[0]) / MANIFEST_CSV, args.overwrite)
    for files in tqdm(cases, desc="checking", unit="case", disable=not args.check, leave=False):
        line = f"{files.case_id}\t{files.population}\t{'labelled' if files.seg else 'unlabelled'}"
        if args.check:
            line += "\t" + _geometry(files.load())
        tqdm.write(line)
    if args.write_manifest:
        print(f"wrote {write_manifest(args.folders[0], cases)}")
    print(f"{len(cases)} case(s)")
    return 0


def run_check(args: argparse.Namespace) -> int:
    files = case_files_from_args(args)
    case = files.load()
    print(f"{case.case_id}: {_geometry(case)}")
    print(f"  source orientation {case.source_grid.orientation}, shape {'x'.join(map(str, case.source_grid.shape))}")
    for name, path in case.files.items():
        print(f"  {name}: {path}")
    if case.label is not None:
        counts = np.bincount(case.label.ravel(), minlength=4)
        volume_ml = float(np.prod(case.grid.spacing)) / 1000.0
        print("  labels: " + ", ".join(f"{LABEL_NAMES[v]} {counts[v] * volume_ml:.1f} ml" for v in LABEL_NAMES))
    print("ok")
    return 0


def _geometry(case: Case) -> str:
    spacing = ", ".join(f"{s:.2f}" for s in case.grid.spacing)
    return f"{'x'.join(map(str, case.shape))} @ {spacing} mm"
