#!/usr/bin/env python3
"""The baseline failure map: adult-trained U-Net and SegFormer on held-out adult, pediatric, SSA and healthy cases.

One repeatable command, fixed seeds:

    python bench/baseline_failure_map.py [--work workspace/baseline] [--archs unet segformer]

It runs the demo job's first stages (MedSegLensLib/pipeline: `cohorts`,
`train_<arch>`, `evaluate`) with the sizes below, so the numbers come from the
same code as `medseglens demo`. Outputs in --work: `evaluation/failure_map.md`
(table), `evaluation/failure_map.png` (figure), `evaluation/failures.csv`,
`evaluation/<arch>_scores.csv` (+ `.summary.csv`) and `run.json` (per-stage wall
times and load averages). Finished stages are kept (done markers in
`.stages/`); an interrupted training run resumes from its checkpoint. Delete
--work to start from scratch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from MedSegLensLib.pipeline import DemoSettings, default_cohorts, run_demo  # noqa: E402
from MedSegLensLib.pipeline.backbone_stages import EVALUATION_DIR  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work", default=str(ROOT / "workspace" / "baseline"), help="folder for cohorts, models, results"
    )
    parser.add_argument("--archs", nargs="+", default=["unet", "segformer"], choices=["unet", "segformer"])
    parser.add_argument("--spacing", type=float, default=2.0, help="synthetic cohort spacing in mm (synth's default)")
    parser.add_argument("--train-cases", type=int, default=40, help="adult cases for training + validation")
    parser.add_argument("--test-cases", type=int, default=16, help="held-out cases per tumour population")
    parser.add_argument("--healthy-cases", type=int, default=8)
    parser.add_argument("--unet-epochs", type=int, default=25)
    parser.add_argument("--segformer-epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--failure-dice", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("MEDSEGLENS_THREADS", "2")))
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    config = DemoSettings(
        spacing=args.spacing,
        architectures=tuple(args.archs),
        steering_architecture=args.archs[0],
        cohorts=default_cohorts(
            train=args.train_cases,
            test=args.test_cases,
            adult_test=args.test_cases,
            healthy=args.healthy_cases,
            calibration=0,
        ),
        epochs=tuple((arch, getattr(args, f"{arch}_epochs")) for arch in args.archs),
        training_seed=args.seed,
        failure_dice=args.failure_dice,
    )
    run_demo(config, args.work, until="evaluate")
    out = Path(args.work) / EVALUATION_DIR
    print(
        f"\n{(out / 'failure_map.md').read_text()}\nwrote {out / 'failure_map.md'}, {out / 'failure_map.png'}, "
        f"{out / 'failures.csv'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
