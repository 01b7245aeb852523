"""`medseglens metrics`: Dice and HD95 per BraTS region and label, for one pair or two folders."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from ..fileio import check_can_write
from ..metrics import REGIONS, resolve_pairs, score_pairs, summarise, write_metrics_csv


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "metrics",
        help="Dice and 95%% Hausdorff distance of predictions against references",
        description="Scores label maps (1 NCR, 2 ED, 3 ET) per region WT/TC/ET and label NCR/ED. "
        "PRED and REF are two files or two folders (cases matched by id).",
    )
    parser.add_argument("--pred", required=True, help="prediction label file or folder")
    parser.add_argument("--ref", required=True, help="reference label file or folder (a cohort folder works)")
    parser.add_argument("--out", required=True, help="CSV to write: one row per case, then mean/std/median")
    parser.add_argument("--no-hd95", dest="hd95", action="store_false", help="Dice only (faster)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    check_can_write(args.out, args.overwrite)
    pairs, unmatched = resolve_pairs(args.pred, args.ref)
    missing = [p.case_id for p in pairs if p.pred is None]
    if missing:
        print(
            f"warning: {len(missing)} reference case(s) have no prediction and get the BraTS penalty: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}",
            file=sys.stderr,
        )
    if unmatched:
        print(
            f"warning: {len(unmatched)} prediction(s) have no reference and are ignored: "
            f"{', '.join(unmatched[:5])}{' ...' if len(unmatched) > 5 else ''}",
            file=sys.stderr,
        )
    progress = (lambda items: tqdm(items, desc="scoring", unit="case", leave=False)) if len(pairs) > 1 else None
    rows = score_pairs(pairs, with_hd95=args.hd95, progress=progress)
    path = write_metrics_csv(rows, args.out, with_hd95=args.hd95)
    mean = summarise(rows, args.hd95)[0]
    for region in REGIONS:
        text = f"{region}: Dice {mean[f'dice_{region}']:.4f}"
        if args.hd95:
            text += f", HD95 {mean[f'hd95_{region}']:.2f} mm"
        print(text)
    print(f"{len(rows)} case(s) scored; wrote {path}")
    return 0
