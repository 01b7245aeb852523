"""Steering latency: one update of a steering session against a full forward pass of the same network, same run.

    python bench/steering_latency.py --unet /work/runs/baseline/models/unet \
        --segformer /work/runs/baseline/models/segformer --sae /work/runs/steering/saes/decoder1 \
        /work/runs/steering/saes/decoder2 --threads 1

Per model and hooked layer: the full `model.predict` of one default-size case
(2 mm, 88x104x88), the session's first pass, and updates of five kinds, timed
interleaved with the full forward (best and median of `--repeats`); ratios are
update / full forward in the same run, best vs best and median vs median. Wall-clock and process CPU seconds are both
printed, because the shared machine's load swings wall-clock times.
It also measures how far region-limited recomputation with frozen
instance-norm statistics (`exact=False`, the viewer's preview) is from the exact
update, for the SAE's most frequent latent or `--latent J`, at strengths up to the
viewer's slider ends (±10 typical activations).

Layers without a matching `--sae` get a throwaway SAE trained on the case's own
windows: latency does not depend on what the latents mean.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from MedSegLensLib.data import discover_cohort, read_case, write_volume
from MedSegLensLib.models import load_model
from MedSegLensLib.sae import SAEInfo, SAETrainingSettings, TensorRows, load_sae, train_sae
from MedSegLensLib.steering import RegionSpec, SteeringSession, SteeringSpec, compute_latent_scales
from MedSegLensLib.steering.scales import latent_scales_for, sae_sha256

DEFAULT_CASE_COHORT = "/work/runs/baseline/cohorts/adult_test"
LAYERS = {
    "unet": ["model.1.submodule.2", "model.1.submodule.1.submodule.2"],
    "segformer": ["decoder.fuse_act", "stages.3"],
}


def throwaway_sae(model, case, layer: str, seed: int = 0):
    """An SAE (8x latents, k = 16 or fewer) fitted for a few hundred steps on this case's window activations."""
    session = SteeringSession(model, None, case, layer)
    rows = torch.cat([b.h.movedim(1, -1).reshape(-1, b.h.shape[1]) for b in session.batches])
    channels = rows.shape[1]
    config = SAETrainingSettings(
        n_latents=8 * channels,
        k=min(16, channels),
        total_rows=min(400_000, 40 * 4096),
        batch_size=4096,
        init_rows=8192,
        seed=seed,
    )
    sae, summary = train_sae(TensorRows(rows), config, show_progress=False)
    sae.info = SAEInfo(model.fingerprint, layer, training=summary)
    scales = compute_latent_scales(
        sae, [rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:200_000]]], "throwaway"
    )
    return sae, scales


def timed(function) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = function()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def active_latents(scales, count: int, offset: int = 0) -> tuple[int, ...]:
    order = torch.argsort(scales.frequency, descending=True)
    alive = [int(i) for i in order if scales.typical[i] > 0]
    return tuple(alive[offset : offset + count])


def sphere_mask(session: SteeringSession, radius_mm: float, folder: Path) -> Path:
    """A mask file: a ball of `radius_mm` around the predicted tumour's centre (a "fix this spot" region)."""
    tumour = session.predicted_tumour()
    centre = np.array(np.nonzero(tumour)).mean(1) if tumour.any() else np.array(tumour.shape) / 2
    grid = session.prepared.grid
    axes = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    distance = np.sqrt(sum(((ax - c) * sp) ** 2 for ax, c, sp in zip(axes, centre, grid.spacing)))
    path = folder / f"sphere-{session.layer}.nii.gz"
    write_volume((distance <= radius_mm).astype(np.uint8), grid, path)
    return path


def bench_layer(
    model, case, layer: str, sae_dir: str | None, repeats: int, workdir: Path, latent: int | None = None
) -> dict:
    if sae_dir:
        sae = load_sae(sae_dir)
        scales = latent_scales_for(sae_dir, sae, sae_sha256(sae_dir))
    else:
        sae, scales = throwaway_sae(model, case, layer)
    full = lambda: model.predict(case)  # noqa: E731
    full()  # warm-up
    build_wall, build_cpu, session = timed(lambda: SteeringSession(model, sae, case, layer, scales=scales))
    a, b = active_latents(scales, 2), active_latents(scales, 2, offset=2)
    margin = RegionSpec("tumour-margin", 10.0)
    sphere = RegionSpec("mask", path=str(sphere_mask(session, radius_mm=10.0, folder=workdir)))
    session.gates(margin)  # region masks are built once per session, not per update
    session.gates(sphere)
    kinds = {
        "strength only (additive, global)": lambda i: SteeringSpec(a, (1.0 + 0.25 * i, -0.5), "additive"),
        "strength only (multiplicative)": lambda i: SteeringSpec(a, (2.0 + 0.25 * i, 0.5), "multiplicative"),
        "latent-set change (multiplicative)": lambda i: SteeringSpec(a if i % 2 else b, (2.0, 0.5), "multiplicative"),
        "region tumour+10 mm, exact": lambda i: SteeringSpec(a, (1.0 + 0.25 * i, -0.5), "additive", margin),
        "region tumour+10 mm, frozen norm": lambda i: SteeringSpec(a, (1.0 + 0.25 * i, -0.5), "additive", margin),
        "region 10 mm sphere, exact": lambda i: SteeringSpec(a, (1.0 + 0.25 * i, -0.5), "additive", sphere),
        "region 10 mm sphere, frozen norm": lambda i: SteeringSpec(a, (1.0 + 0.25 * i, -0.5), "additive", sphere),
    }
    session.steer(kinds["strength only (multiplicative)"](0))  # codes of `a` cached, as after a first slider move
    rows = {name: {"wall": [], "cpu": [], "windows": 0} for name in kinds}
    fulls = {"wall": [], "cpu": []}
    for i in range(repeats):
        wall, cpu, _ = timed(full)
        fulls["wall"].append(wall)
        fulls["cpu"].append(cpu)
        for name, make in kinds.items():
            exact = "frozen" not in name
            wall, cpu, result = timed(lambda make=make, i=i, exact=exact: session.steer(make(i + 1), exact=exact))
            rows[name]["wall"].append(wall)
            rows[name]["cpu"].append(cpu)
            rows[name]["windows"] = (
                f"{result.windows_recomputed}/{result.windows_total}"
                f"{f' ({result.windows_cropped} cropped)' if result.windows_cropped else ''}"
                f"{' preview' if result.preview else ''}"
            )
    full_wall, full_cpu = statistics.median(fulls["wall"]), statistics.median(fulls["cpu"])
    out = {
        "layer": layer,
        "sae": sae_dir or "throwaway",
        "entry_shortcut": session.uses_entry_shortcut,
        "full_forward_s": full_wall,
        "full_forward_best_s": min(fulls["wall"]),
        "full_forward_cpu_s": full_cpu,
        "session_build_s": build_wall,
        "session_build_ratio": build_wall / full_wall,
        "updates": {},
    }
    for name, row in rows.items():
        wall, cpu = statistics.median(row["wall"]), statistics.median(row["cpu"])
        out["updates"][name] = {
            "s": wall,
            "ratio": wall / full_wall,
            "best_s": min(row["wall"]),
            "best_ratio": min(row["wall"]) / min(fulls["wall"]),
            "cpu_s": cpu,
            "cpu_ratio": cpu / full_cpu,
            "windows": row["windows"],
        }
    out["frozen_deviation"] = frozen_deviation(session, a[0] if latent is None else latent, margin)
    return out


def frozen_deviation(session: SteeringSession, latent: int, region: RegionSpec) -> list[dict]:
    """Frozen-statistics update (the preview) vs exact update of one latent: logit difference and labels."""
    deviations = []
    for alpha in (-10.0, -4.0, -1.0, 0.5, 1.0, 2.0, 4.0, 10.0):  # +-10: the viewer's slider ends
        spec = SteeringSpec((latent,), (alpha,), "additive", region)
        exact, frozen = session.steer(spec), session.steer(spec, exact=False)
        changed = exact.prediction.labels != session.unsteered().labels
        differ = exact.prediction.labels != frozen.prediction.labels
        deviations.append(
            {
                "latent": latent,
                "alpha": alpha,
                "max_logit_diff": float((exact.logits - frozen.logits).abs().max()),
                "voxels_changed_by_steering": int(changed.sum()),
                "voxels_frozen_differs": int(differ.sum()),
            }
        )
    return deviations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unet", help="U-Net model folder")
    parser.add_argument("--segformer", help="SegFormer model folder")
    parser.add_argument(
        "--sae",
        nargs="*",
        default=[],
        metavar="SAE_DIR",
        help="SAE folders, used for the model and layer they belong to (others get a throwaway SAE)",
    )
    parser.add_argument("--case", help=f"case folder (default: the first case of {DEFAULT_CASE_COHORT})")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--layers", help="comma-separated layers to time (default: both of each architecture)")
    parser.add_argument(
        "--latent", type=int, help="latent whose preview deviation is measured (default: most frequent)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    case = read_case(args.case) if args.case else discover_cohort(DEFAULT_CASE_COHORT)[0].load()
    print(
        f"case {case.case_id} {case.shape} at {case.grid.spacing} mm, {args.threads} thread(s), "
        f"{args.repeats} repeats; medians"
    )
    results = {}
    workdir = Path(tempfile.mkdtemp(prefix="steering-latency-"))
    saes = {}
    for folder in args.sae:
        info = load_sae(folder).info
        saes[(info.model_fingerprint, info.layer)] = folder
    for arch, model_dir in (("unet", args.unet), ("segformer", args.segformer)):
        if not model_dir:
            continue
        model = load_model(model_dir, device="cpu")
        for layer in LAYERS[arch]:
            if args.layers and layer not in args.layers.split(","):
                continue
            sae_dir = saes.get((model.fingerprint, layer))
            result = bench_layer(model, case, layer, sae_dir, args.repeats, workdir, args.latent)
            results[f"{arch} {layer}"] = result
            print(
                f"\n{arch} @ {layer} (SAE {result['sae']}; entry shortcut: {result['entry_shortcut']}): full forward "
                f"{result['full_forward_s']:.3f} s ({result['full_forward_cpu_s']:.3f} CPU-s); session build "
                f"{result['session_build_s']:.3f} s ({result['session_build_ratio']:.2f}x)"
            )
            print(
                f"  full forward best {result['full_forward_best_s']:.3f} s\n"
                f"  {'update (median, then best)':38s} {'s':>7s} {'x full':>7s} {'CPU-s':>7s} {'x full':>7s} "
                f"{'best s':>7s} {'x full':>7s} windows"
            )
            for name, row in result["updates"].items():
                print(
                    f"  {name:38s} {row['s']:7.3f} {row['ratio']:7.2f} {row['cpu_s']:7.3f} {row['cpu_ratio']:7.2f} "
                    f"{row['best_s']:7.3f} {row['best_ratio']:7.2f} {row['windows']}"
                )
            for dev in result["frozen_deviation"]:
                print(
                    f"  preview (frozen) vs exact, latent {dev['latent']}, alpha {dev['alpha']}: "
                    f"max |logit diff| {dev['max_logit_diff']:.3f}, {dev['voxels_frozen_differs']} voxels differ "
                    f"(steering changed {dev['voxels_changed_by_steering']})"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
