#!/usr/bin/env python3
"""Agreement of `medseglens metrics` with the official BraTS tooling (brats-evaluation + panoptica).

panoptica pins numpy < 2.3, so it cannot share MedSegLens's environment; give
the python of a separate environment that has it:

    python3 -m venv /tmp/brats-eval && /tmp/brats-eval/bin/pip install "numpy<2.3" brats-evaluation
    python bench/metrics_agreement.py --official-python /tmp/brats-eval/bin/python [--cases 20]

Writes random BraTS-like label maps (seeded, anisotropic spacing, some with
empty regions), scores them with MedSegLens and with brats-evaluation's
`evaluate_single_exam` (bundled glioma config), and prints the largest
differences per metric. brats-evaluation reports NaN where both masks are
empty (MedSegLens: Dice 1, HD95 0, the older BraTS rule) and 373 for HD95
where exactly one is empty (as MedSegLens); NaN rows are counted, not compared.

panoptica 2.1.7 computes these global scores without the voxel spacing (its
HD95 is in voxels), so HD95 is compared twice: MedSegLens in mm (equal only on
1 mm isotropic data, which all BraTS releases are) and MedSegLens with unit
spacing (must agree everywhere).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from MedSegLensLib.metrics import brats_scores, score_pair  # noqa: E402

# brats-evaluation's group names for MedSegLens's structures.
GROUPS = {"WT": "wt", "TC": "tc", "ET": "et", "NCR": "netc", "ED": "snfh"}
OFFICIAL = """
import json, sys
from importlib.resources import files
from panoptica import Panoptica_Evaluator
from brats_evaluation.evaluation import evaluate_single_exam
config = str(files("brats_evaluation").joinpath("configs", "config_gli.yaml"))
evaluator = Panoptica_Evaluator.load_from_config(config)
out = {}
for case, pred, ref in json.loads(sys.argv[1]):
    result = evaluate_single_exam(pred, ref, case, evaluator)
    out[case] = {g: {"dsc": r.get("global_bin_dsc"), "hd95": r.get("global_bin_hd95")}
                 for g, r in result.items() if isinstance(r, dict)}
print(json.dumps(out))
"""


def random_labels(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """Smooth random blobs: WT from one field, TC and ET nested inside; regions sometimes empty."""
    field = gaussian_filter(rng.normal(size=shape), 2.0)
    field /= field.std()
    labels = np.zeros(shape, np.uint8)
    labels[field > rng.uniform(0.3, 1.2)] = 2
    labels[field > rng.uniform(1.3, 1.8)] = 3
    labels[field > rng.uniform(1.9, 2.6)] = 1
    if rng.random() < 0.15:
        labels[labels == 3] = 2  # no enhancing tumour
    if rng.random() < 0.1:
        labels[:] = 0  # healthy
    return labels


def perturb(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """A plausible prediction: shifted, with some labels swapped and some speckle."""
    pred = np.roll(labels, tuple(rng.integers(-2, 3, 3)), axis=(0, 1, 2))
    swap = rng.random(labels.shape) < 0.05
    pred[swap & (pred > 0)] = rng.integers(1, 4, int(np.sum(swap & (pred > 0))))
    speckle = rng.random(labels.shape) < 0.002
    pred[speckle] = 2
    return pred.astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-python", required=True, help="python of an environment with brats-evaluation")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        jobs, ours, ours_voxels, isotropic = [], {}, {}, set()
        for index in range(args.cases):
            shape = tuple(int(s) for s in rng.integers(24, 40, 3))
            anisotropic = tuple(float(s) for s in rng.choice([0.8, 1.0, 1.5, 2.0, 3.0], 3))
            spacing = (1.0, 1.0, 1.0) if index % 2 == 0 else anisotropic  # BraTS itself is 1 mm
            ref = random_labels(rng, shape)
            pred = perturb(rng, ref) if rng.random() > 0.05 else np.zeros(shape, np.uint8)
            affine = np.diag([*spacing, 1.0])
            case = f"case{index:05d}"
            ref_path, pred_path = Path(folder) / f"ref-{case}.nii.gz", Path(folder) / f"pred-{case}.nii.gz"
            nib.save(nib.Nifti1Image(ref, affine), ref_path)
            nib.save(nib.Nifti1Image(pred, affine), pred_path)
            ours[case] = score_pair(pred_path, ref_path)
            ours_voxels[case] = brats_scores(pred, ref, spacing=(1.0, 1.0, 1.0))
            if spacing == (1.0, 1.0, 1.0):
                isotropic.add(case)
            jobs.append((case, str(pred_path), str(ref_path)))
        run = subprocess.run(
            [args.official_python, "-c", OFFICIAL, json.dumps(jobs)], capture_output=True, text=True, check=True
        )
        official = json.loads(run.stdout.strip().splitlines()[-1])
    worst = {"dice": 0.0, "hd95 (unit spacing)": 0.0, "hd95 mm, 1 mm cases": 0.0, "hd95 mm, other cases": 0.0}
    compared = both_empty = 0
    for case, scores in ours.items():
        for name, group in GROUPS.items():
            theirs = official[case][group]
            if theirs["dsc"] is None or np.isnan(theirs["dsc"]):
                both_empty += 1
                assert scores[f"dice_{name}"] == 1.0 and scores[f"hd95_{name}"] == 0.0
                continue
            hd = 373.0 if np.isinf(theirs["hd95"]) else theirs["hd95"]
            mm_key = "hd95 mm, 1 mm cases" if case in isotropic else "hd95 mm, other cases"
            for key, difference in (
                ("dice", scores[f"dice_{name}"] - theirs["dsc"]),
                ("hd95 (unit spacing)", ours_voxels[case][f"hd95_{name}"] - hd),
                (mm_key, scores[f"hd95_{name}"] - hd),
            ):
                worst[key] = max(worst[key], abs(difference))
            compared += 1
    print(
        f"{args.cases} cases x {len(GROUPS)} structures: {compared} compared, {both_empty} both-empty (official NaN); "
        f"{len(isotropic)} case(s) at 1 mm isotropic"
    )
    print("largest |difference| from brats-evaluation: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    agree = max(worst["dice"], worst["hd95 (unit spacing)"], worst["hd95 mm, 1 mm cases"]) < 1e-6
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
