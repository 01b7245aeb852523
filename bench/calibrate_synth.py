#!/usr/bin/env python3
"""Calibrate the synthetic populations: does an adult-trained U-Net fail on the shifted ones?

One command, fixed seeds:

    python bench/calibrate_synth.py            # ~10 min on 2 CPU cores

generates adult training cases and held-out adult, pediatric, SSA and healthy
test cases with `medseglens synth`'s library call, trains a small MONAI UNet
(channels 16,32,64,128; strides 2,2,2; 1 residual unit; Dice+CE; 64^3 patches)
on the adult cases, and prints per-population Dice (WT/TC/ET/ED) and failure
rates (a failure: WT or ED Dice < 0.5; empty reference and prediction count
as Dice 1, one empty as 0, as in BraTS). Self-contained on purpose; it will
move to the project's training package once that exists.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monai.data import set_track_meta  # noqa: E402
from monai.losses import DiceCELoss  # noqa: E402
from monai.networks.nets import UNet  # noqa: E402
from monai.transforms import Compose, RandCropByPosNegLabeld, RandFlipd  # noqa: E402

from MedSegLensLib.data import discover_cohort  # noqa: E402
from MedSegLensLib.synth import generate_cohort  # noqa: E402

REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,), "ED": (2,)}
FAILURE_DICE = 0.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=str(ROOT / "workspace" / "calibrate_synth"), help="folder for the cohorts")
    parser.add_argument("--spacing", type=float, default=2.0)
    parser.add_argument(
        "--severities",
        type=float,
        nargs="+",
        default=[1.0],
        help="severities at which the shifted populations are tested (one training run)",
    )
    parser.add_argument("--train-cases", type=int, default=32)
    parser.add_argument("--test-cases", type=int, default=20)
    parser.add_argument("--healthy-cases", type=int, default=8)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy shared machine)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def generator_fingerprint() -> str:
    """Hash of the generator's source: cohorts are regenerated whenever the generator changes."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "MedSegLensLib" / "synth").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def cohort(work: Path, population: str, cases: int, seed: int, spacing: float, severity: float) -> list:
    name = f"{population}-n{cases}-s{seed}-{spacing:g}mm-sev{severity:g}-{generator_fingerprint()}"
    folder = work / name
    if not folder.exists():
        summary = generate_cohort(population, cases, seed, folder, spacing=spacing, severity=severity)
        print(f"generated {folder.name}: {summary.seconds_per_case:.2f} s per case", flush=True)
    return [files.load() for files in discover_cohort(folder)]


def normalise(image: np.ndarray) -> np.ndarray:
    """z-score each modality inside the brain (non-zero voxels), as BraTS pipelines do."""
    out = np.zeros_like(image)
    brain = image[0] > 0
    for channel in range(image.shape[0]):
        values = image[channel][brain]
        out[channel][brain] = (values - values.mean()) / (values.std() + 1e-6)
    return out


def train(cases: list, args: argparse.Namespace) -> torch.nn.Module:
    torch.manual_seed(args.seed)
    set_track_meta(False)  # plain tensors: MONAI's metadata tracking makes CPU training many times slower
    data = [{"image": normalise(c.image), "label": c.label[None].astype(np.int64)} for c in cases]
    sampler = Compose(
        [
            RandCropByPosNegLabeld(("image", "label"), "label", (args.patch,) * 3, pos=2, neg=1, num_samples=1),
            RandFlipd(("image", "label"), prob=0.5, spatial_axis=0),
        ]
    )
    sampler.set_random_state(seed=args.seed)
    net = UNet(3, 4, 4, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1)
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, args.steps)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = [sampler(data[i])[0] for i in rng.integers(len(data), size=2)]
        image = torch.stack([torch.as_tensor(b["image"]) for b in batch]).float()
        label = torch.stack([torch.as_tensor(b["label"]) for b in batch])
        optimiser.zero_grad()
        loss = loss_fn(net(image), label)
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 100 == 0 or step == args.steps:
            print(f"step {step}/{args.steps} loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    return net.eval()


def dice(prediction: np.ndarray, reference: np.ndarray, values: tuple[int, ...]) -> float:
    p, r = np.isin(prediction, values), np.isin(reference, values)
    total = p.sum() + r.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(p, r).sum() / total)


def evaluate(net: torch.nn.Module, cases: list) -> list[dict]:
    rows = []
    with torch.no_grad():
        for case in cases:
            logits = net(torch.as_tensor(normalise(case.image))[None].float())
            prediction = logits.argmax(1)[0].numpy().astype(np.uint8)
            prediction[case.image[0] == 0] = 0
            row = {region: dice(prediction, case.label, values) for region, values in REGIONS.items()}
            row["predicted_cc"] = float(np.count_nonzero(prediction) * np.prod(case.grid.spacing) / 1000)
            row["reference_cc"] = float(np.count_nonzero(case.label) * np.prod(case.grid.spacing) / 1000)
            rows.append(row)
    return rows


def report(population: str, rows: list[dict]) -> None:
    means = " ".join(f"{region} {np.mean([r[region] for r in rows]):.3f}" for region in REGIONS)
    if population == "healthy":
        false = sum(r["predicted_cc"] > 1.0 for r in rows)
        print(
            f"{population:14s} n={len(rows):3d} cases with >1 cc predicted tumour: {false}/{len(rows)} "
            f"(mean {np.mean([r['predicted_cc'] for r in rows]):.1f} cc)"
        )
        return
    failed = [r for r in rows if r["WT"] < FAILURE_DICE or r["ED"] < FAILURE_DICE]
    print(
        f"{population:14s} n={len(rows):3d} {means}  failures {len(failed)}/{len(rows)} "
        f"({100 * len(failed) / len(rows):.0f} %)  WT<0.5: {sum(r['WT'] < FAILURE_DICE for r in rows)}  "
        f"ED<0.5: {sum(r['ED'] < FAILURE_DICE for r in rows)}  mean WT "
        f"{np.mean([r['reference_cc'] for r in rows]):.0f} cc"
    )


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    start = time.perf_counter()
    train_cases = cohort(work, "adult", args.train_cases, args.seed + 1000, args.spacing, 1.0)
    tests = {("adult", 1.0): cohort(work, "adult", args.test_cases, args.seed + 2000, args.spacing, 1.0)}
    for severity in args.severities:
        for population in ("pediatric", "ssa"):
            tests[population, severity] = cohort(
                work, population, args.test_cases, args.seed + 2000, args.spacing, severity
            )
    tests["healthy", 1.0] = cohort(work, "healthy", args.healthy_cases, args.seed + 2000, args.spacing, 1.0)
    print(f"data ready in {time.perf_counter() - start:.0f} s", flush=True)
    net = train(train_cases, args)
    print(
        f"\nadult-trained UNet, {args.steps} steps, spacing {args.spacing:g} mm; "
        f"failure = WT or ED Dice < {FAILURE_DICE}"
    )
    for (population, severity), cases in tests.items():
        report(
            f"{population} @{severity:g}" if population in ("pediatric", "ssa") else population, evaluate(net, cases)
        )
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
