"""`medseglens cases`: list (and optionally validate) the cases of cohort folders."""

from __future__ import annotations

import argparse

from ..data import discover_cohorts


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cases", help="list the cases of cohort folders")
    parser.add_argument("folders", nargs="+", help="cohort folders (with a manifest or BraTS case sub-folders)")
    parser.add_argument("--check", action="store_true", help="also read every file and validate it")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    cases = discover_cohorts(args.folders)
    for files in cases:
        line = f"{files.case_id}\t{files.population}\t{'labelled' if files.seg else 'unlabelled'}"
        if args.check:
            case = files.load()
            line += f"\t{'x'.join(map(str, case.shape))} @ {', '.join(f'{s:.2f}' for s in case.grid.spacing)} mm"
        print(line)
    print(f"{len(cases)} case(s)")
    return 0
