"""Make the README screenshot `Resources/Screenshots/medseglens-views.png` with the CLI, headless.

Every step is a `medseglens` command (run as a subprocess, so this is exactly
what a user would type): a synthetic adult cohort from the MNI templates, a
small U-Net trained on it at 4 mm, an SAE on the U-Net's default layer, one
held-out 2 mm case segmented by the model, one latent's map (`latents --map`)
and the three slice views through Slicer's slice logic: the MRI (T1c), the
latent map as the Slicer module draws it and the model's segmentation as
outlines. The last step is not `medseglens render` but the module's own
overlay (`MedSegLensLib.slicer_module.overlay.LatentOverlay`, the shared rule
of `MedSegLensLib.latent_focus`): heat colour map over the latent's p50..p99
in this case, transparent below p50, views through where it fires most. The
latent shown is the one whose map is most concentrated in the held-out case's
reference tumour (a display choice that uses the reference labels; it is
printed). Finished steps in --work are reused.

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
from MedSegLensLib.data.brats import label_scheme  # noqa: E402


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


def render_module_views(case: Path, segmentation: Path, map_path: Path, latent: int, out: str) -> None:
    """T1c, the latent overlay exactly as the Slicer module shows it, and the segmentation's outlines, 320 px each."""
    from MedSegLensLib import scene as scene_api
    from MedSegLensLib.data.geometry import resample_to_grid, to_canonical
    from MedSegLensLib.slicer_module.overlay import LatentOverlay

    files = find_case_files(case)
    files.seg, files.scheme = str(segmentation), label_scheme(str(segmentation))
    loaded = files.load(with_labels=True)
    volume = read_volume(map_path)
    array, grid = to_canonical(volume.array.astype(np.float32), volume.grid)
    activation = resample_to_grid(array, grid, loaded.grid, order=1)
    headless = scene_api.create_headless_slicer()
    background = scene_api.add_case_volumes(headless.scene, loaded).volumes["t1c"]
    overlay = LatentOverlay(headless.scene, scene_api, background, loaded.case_id)
    node = overlay.show(activation, loaded.grid, latent, jump=False)
    labels = scene_api.add_brats_segmentation(headless.scene, loaded.label, loaded.grid, background, "segmentation")
    position = np.asarray(overlay.focus.focus_ras(loaded.grid.affine))
    scene_api.render_orthogonal(
        headless.scene,
        background,
        node,
        labels,
        position,
        size=320,
        path=out,
        overwrite=True,
        foreground_opacity=0.8,
        outline=True,
        segmentation_opacity=1.0,
    )
    print(f"{out}: {overlay.legend()}")


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
        medseglens(
            "synth",
            "--population",
            "adult",
            "--cases",
            "8",
            "--seed",
            "11",
            "--spacing",
            "4",
            "--out",
            str(train),
            "--quiet",
            threads=t,
        )
    if not show.is_dir():
        medseglens(
            "synth",
            "--population",
            "adult",
            "--cases",
            "1",
            "--seed",
            "12",
            "--spacing",
            "2",
            "--out",
            str(show),
            "--quiet",
            threads=t,
        )
    if not (model / "model.json").is_file():
        medseglens(
            "train",
            "--arch",
            "unet",
            "--data",
            str(train),
            "--out",
            str(model),
            "--epochs",
            "60",
            "--spacing",
            "4",
            "4",
            "4",
            "--patch",
            "32",
            "32",
            "32",
            "--val-fraction",
            "0",
            "--seed",
            "0",
            "--device",
            "cpu",
            threads=t,
        )
    if not (sae / "sae.json").is_file():
        medseglens(
            "sae",
            "train",
            "--model",
            str(model),
            "--data",
            str(train),
            "--out",
            str(sae),
            "--latents",
            "64",
            "--k",
            "4",
            "--kind",
            "topk",
            "--rows",
            "200000",
            "--seed",
            "0",
            "--device",
            "cpu",
            threads=t,
        )
    case = next(p for p in sorted(show.iterdir()) if p.is_dir())
    segmentation = work / "segmentation.nii.gz"
    medseglens(
        "segment",
        "--model",
        str(model),
        "--case",
        str(case),
        "--out",
        str(segmentation),
        "--device",
        "cpu",
        "--overwrite",
        threads=t,
    )
    rows_file = work / "latents.json"
    medseglens(
        "latents",
        "--model",
        str(model),
        "--sae",
        str(sae),
        "--case",
        str(case),
        "--json",
        str(rows_file),
        "--top",
        "5",
        "--threads",
        str(t),
        "--overwrite",
        threads=t,
    )
    reference = read_volume(find_case_files(case).seg, kind="label").array
    rows = json.loads(rows_file.read_text())["latents"][: args.candidates]
    contrast = {}
    for row in rows:
        path = work / f"latent-{row['latent']}.nii.gz"
        medseglens(
            "latents",
            "--model",
            str(model),
            "--sae",
            str(sae),
            "--case",
            str(case),
            "--top",
            "0",
            "--filter",
            str(row["latent"]),
            "--map",
            str(row["latent"]),
            "--out",
            str(path),
            "--threads",
            str(t),
            "--overwrite",
            threads=t,
        )
        contrast[row["latent"]] = tumour_contrast(path, reference)
    latent = max(contrast, key=contrast.get)
    print(
        "tumour contrast (mean inside / outside the reference tumour): "
        + ", ".join(f"latent {j}: {c:.2f}" for j, c in contrast.items())
        + f"; showing latent {latent}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    render_module_views(case, segmentation, work / f"latent-{latent}.nii.gz", latent, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
