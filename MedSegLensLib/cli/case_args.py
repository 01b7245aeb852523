"""The shared way commands name one case: `--case FOLDER` or the four modality files.

    medseglens CMD --case BraTS-GLI-00001-000/
    medseglens CMD --t1n a.nii.gz --t1c b.nrrd --t2w c.nii --t2f d.nii.gz [--seg s.nii.gz]

Commands call `add_case_arguments(parser)` and then `case_files_from_args(args)`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import MODALITIES, CaseFiles, case_files_from_paths, find_case_files
from ..data.brats import label_scheme
from ..data.cohort import check_case_id
from ..errors import InputError, ParameterError

_MODALITY_HELP = {"t1n": "native T1", "t1c": "contrast-enhanced T1", "t2w": "T2", "t2f": "T2-FLAIR"}


def add_case_arguments(parser: argparse.ArgumentParser, with_seg: bool = True) -> None:
    """Add `--case` and `--t1n/--t1c/--t2w/--t2f` (and `--seg`) to `parser`."""
    group = parser.add_argument_group("case", "a BraTS case folder, or the four modality files by name")
    group.add_argument("--case", metavar="FOLDER", help="case folder with BraTS 2023 (-t1n...) or 2021 (_t1...) names")
    for modality in MODALITIES:
        group.add_argument(
            f"--{modality}", metavar="FILE", help=f"{_MODALITY_HELP[modality]} image (.nii, .nii.gz, .nrrd, .nhdr)"
        )
    if with_seg:
        group.add_argument("--seg", metavar="FILE", help="reference segmentation (labels 1 NCR, 2 ED, 3 ET); optional")
    group.add_argument("--case-id", metavar="ID", help="name for the case (default: from the folder or file names)")


def case_files_from_args(args: argparse.Namespace) -> CaseFiles:
    """The case named by `--case` or by the four modality options; one of the two, not both."""
    named = {m: getattr(args, m) for m in MODALITIES if getattr(args, m, None)}
    seg = getattr(args, "seg", None)
    if args.case and named:
        raise ParameterError("give either --case FOLDER or the files --t1n/--t1c/--t2w/--t2f, not both")
    if args.case:
        folder = Path(args.case)
        if folder.is_file():
            raise InputError(f"{folder}: --case expects a case folder; name single files with --t1n --t1c --t2w --t2f")
        files = find_case_files(folder)
        if seg:
            files.seg, files.scheme = seg, label_scheme(seg)
    elif named:
        missing = [f"--{m}" for m in MODALITIES if m not in named]
        if missing:
            raise ParameterError(f"missing {' '.join(missing)}: all four modality files are needed")
        files = case_files_from_paths(named, seg=seg)
    else:
        raise ParameterError("no case given: pass --case FOLDER or --t1n F --t1c F --t2w F --t2f F")
    if getattr(args, "case_id", None):
        files.case_id = check_case_id(args.case_id, "--case-id")
    return files
