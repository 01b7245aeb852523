"""Make the README screenshot `Resources/Screenshots/medseglens-views.png` with the CLI, headless.

Every step is a `medseglens` command (run as a subprocess, so this is exactly
what a user would type): a synthetic adult cohort from the MNI templates, a
small U-Net trained on it at 4 mm, an SAE on the U-Net's default layer, one
held-out 2 mm case segmented by the model, one latent's map (`latents --map`)
and the three slice views through Slicer's slice logic (`render`): the MRI
(T1c), the latent map as a colour overlay and the model's segmentation as
outlines. The latent shown is the one whose map is most concentrated in the
held-out case's reference tumour (a display choice that uses the reference
labels; it is printed). Finished steps in --work are reused.

    python scripts/readme_screenshot.py [--work DIR] [--out PNG] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from MedSegLensLib.data import find_case_files, read_volume  # noqa: E402


def medseglens(*args: str, threads: int) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    print("$ medseglens " + " ".join(args), flush=True)
    result = subprocess.run([sys.executable, "-m", "MedSegLensLib", *args], env=env, text=True, stdout=subprocess.PIPE)
    if result.returncode:
        sys.exit(f"medseglens {args[0]} failed (exit {result.returncode})")
    print(result.stdout, end="", flush=True)
    return result.stdout


def tumour_contrast(map_path: Path, reference: np.ndarray) -> float:
    """Mean activation inside the reference tumour over the mean outside (higher: more tumour-specific)."""
    activation = read_volume(map_path).array
    inside, outside = activation[reference > 0].mean(), activation[reference == 0].mean()
    return float(inside / max(outside, 1e-6))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(ROOT / "workspace" / "screenshot"))
    parser.add_argument("--out", default=str(ROOT / "Resources" / "Screenshots" / "medseglens-views.png"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--candidates", type=int, default=8, help="strongest latents whose maps are compared")
    args = parser.parse_args()
    work, t = Path(args.work), args.threads
    work.mkdir(parents=True, exist_ok=True)
    train, show, model, sae = work / "train", work / "show", work / "model", work / "sae"
    if not train.is_dir():
        medseglens("synth", "--population", "adult", "--cases", "8", "--seed", "11", "--spacing", "4",
                   "--out", str(train), "--quiet", threads=t)
    if not show.is_dir():
        medseglens("synth", "--population", "adult", "--cases", "1", "--seed", "12", "--spacing", "2",
                   "--out", str(show), "--quiet", threads=t)
    if not (model / "model.json").is_file():
        medseglens("train", "--arch", "unet", "--data", str(train), "--out", str(model), "--epochs", "60",
                   "--spacing", "4", "4", "4", "--patch", "32", "32", "32", "--val-fraction", "0",
                   "--seed", "0", "--device", "cpu", threads=t)
    if not (sae / "sae.json").is_file():
        medseglens("sae", "train", "--model", str(model), "--data", str(train), "--out", str(sae), "--latents", "64",
                   "--k", "4", "--kind", "topk", "--rows", "200000", "--seed", "0", "--device", "cpu", threads=t)
    case = next(p for p in sorted(show.iterdir()) if p.is_dir())
    segmentation = work / "segmentation.nii.gz"
    medseglens("segment", "--model", str(model), "--case", str(case), "--out", str(segmentation), "--device", "cpu",
               "--overwrite", threads=t)
    rows_file = work / "latents.json"
    medseglens("latents", "--model", str(model), "--sae", str(sae), "--case", str(case), "--json", str(rows_file),
               "--top", "5", "--threads", str(t), "--overwrite", threads=t)
    reference = read_volume(find_case_files(case).seg, kind="label").array
    rows = json.loads(rows_file.read_text())["latents"][: args.candidates]
    contrast = {}
    for row in rows:
        path = work / f"latent-{row['latent']}.nii.gz"
        medseglens("latents", "--model", str(model), "--sae", str(sae), "--case", str(case), "--top", "0",
                   "--filter", str(row["latent"]), "--map", str(row["latent"]), "--out", str(path),
                   "--threads", str(t), "--overwrite", threads=t)
        contrast[row["latent"]] = tumour_contrast(path, reference)
    latent = max(contrast, key=contrast.get)
    print("tumour contrast (mean inside / outside the reference tumour): "
          + ", ".join(f"latent {j}: {c:.2f}" for j, c in contrast.items()) + f"; showing latent {latent}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    medseglens("render", "--case", str(case), "--seg", str(segmentation), "--map",
               str(work / f"latent-{latent}.nii.gz"), "--out", args.out, "--size", "320", "--overwrite", threads=t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
