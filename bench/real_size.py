"""Every step timed on a BraTS-size case (240x240x155 at 1 mm) for three networks, as seconds and as ratios to segment.

    nice -n 10 python bench/real_size.py --out /tmp/real-size            # real size, all three networks
    python bench/real_size.py --small --out /tmp/rs                       # tiny sizes of the same code (the test's)
    python bench/real_size.py --networks unet,segformer --json table.json
    nice -n 10 python bench/real_size.py --networks nnunet --shape 192,128,128 --session-only \
        --cache-budget-gb none                                              # the steering session's memory alone

It writes a synthetic BraTS 2023-style case folder (`<id>/<id>-t1n/-t1c/-t2w/-t2f/-seg.nii.gz`, LPS, 1 mm,
a brain-like ellipsoid with a planted tumour: necrotic core, enhancing rim, edema) and a region mask (the
planted tumour grown by the steering panel's default margin, `DEFAULT_MARGIN_MM`, standing in for the
viewer's default "predicted tumour + margin" region, which random weights cannot predict). Networks, all with
random weights (timing does not depend on what they learned):

- `unet`: the demo's U-Net (`default_config("unet")`, 2 mm like the demo workspace);
- `segformer`: the demo's SegFormer (`default_config("segformer")`, 2 mm);
- `segformer-fuse` (only when named): the same SegFormer with the SAE at `decoder.fuse_act`, whose suffix
  (per-voxel head, upsampling) is local, so the exact steer re-runs only crops;
- `nnunet`: an nnU-Net v2 3d_fullres PlainConvUNet with the default plans' sizes for a BraTS dataset
  (1 mm, patch 128^3, 6 stages of 32..320 features, as nnU-Net's planner gives for BraTS 2021, Dataset137),
  written as a synthetic nnU-Net results folder (dataset.json, plans.json, fold_0/checkpoint_final.pth) and
  brought in through the import path (`models.external.import_model(..., "nnunetv2", ...)`).

Each network runs in its own child process (so its peak memory is its own, `ru_maxrss`) and times:
read + validate (`read_case`), segment (`model.predict`), encode (SAE codes of the whole case at the SAE's
layer, `encode_case`; an untrained SAE of the default size), one latent map on the image grid, the steering
session's first pass (`open_session`: the cached prefix), the first exact steer of a latent inside the region
(it also encodes that latent's codes in every window, puts the region on the layer lattice and makes the
unsteered labels, all reused by later updates), an update (the same latent at a new strength: what a slider
move costs) and the same update as a frozen-norm preview (`exact=False`; a network without a preview runs it
exactly again), with the preview's deviation (voxels whose label differs from the exact result). Ratios are
to segment, measured in the same process, both in wall-clock and in process CPU seconds (all threads): on a
shared, loaded machine the wall clock mostly measures the load, so the verdicts use the CPU-second ratios.
Goals (issue 19): encode <= 1.5x segment, steer <= 0.25x segment, peak memory <= 8 GB on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

NETWORKS = ("unet", "segformer", "nnunet")
EXTRA_NETWORKS = ("segformer-fuse",)  # the SegFormer hooked at its decoder fuse layer: a local suffix, exact crops
MODALITIES = ("t1n", "t1c", "t2w", "t2f")
REAL_SHAPE = (240, 240, 155)
SMALL_SHAPE = (32, 32, 24)
GOALS = {"encode": 1.5, "steer": 0.25}
MEMORY_GOAL_GB = 8.0

# nnU-Net v2's default 3d_fullres plan for BraTS-size data (Dataset137, 1 mm): what its planner writes.
NNUNET_REAL = {"patch_size": [128, 128, 128], "features_per_stage": [32, 64, 128, 256, 320, 320], "n_stages": 6}
NNUNET_SMALL = {"patch_size": [32, 32, 32], "features_per_stage": [4, 8, 16], "n_stages": 3}
SAE_LAYERS = {  # layer, latents, k: sae/defaults.py for the U-Net and the SegFormer; nnU-Net: its 1/2-res decoder
    "unet": ("model.1.submodule.2", 128, 8),
    "segformer": ("stages.3", 1024, 16),
    "segformer-fuse": ("decoder.fuse_act", 0, 16),
}


# -- inputs -------------------------------------------------------------------------------------------------------
def write_case(root: Path, shape=REAL_SHAPE, seed: int = 0, case_id: str = "BraTS-SYN-00000-000") -> tuple[Path, Path]:
    """A BraTS 2023-style case folder at 1 mm and a region mask (planted tumour + the default margin)."""
    import nibabel as nib

    from MedSegLensLib.steering_contract import DEFAULT_MARGIN_MM

    rng = np.random.default_rng(seed)
    folder = root / case_id
    folder.mkdir(parents=True, exist_ok=True)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    centre = [n / 2 for n in shape]
    brain_r = [0.42 * n for n in shape]
    brain = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, brain_r)) <= 1.0
    tumour_c = [c + 0.15 * n for c, n in zip(centre, shape)]
    radius = np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, tumour_c)))
    scale = min(shape) / 155.0
    seg = np.zeros(shape, np.uint8)
    seg[(radius <= 30 * scale) & brain] = 2  # edema
    seg[radius <= 17 * scale] = 3  # enhancing rim
    seg[radius <= 11 * scale] = 1  # necrotic core
    contrast = {
        "t1n": (1.0, 0.6, 0.9, 0.9),
        "t1c": (1.0, 0.6, 0.9, 1.7),
        "t2w": (1.0, 1.7, 1.4, 1.3),
        "t2f": (1.0, 1.1, 1.7, 1.3),
    }
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    for name in MODALITIES:
        image = np.where(brain, 100.0 * np.take(np.array(contrast[name]), seg), 0.0).astype(np.float32)
        image += np.where(brain, rng.normal(0, 3.0, shape), 0).astype(np.float32)
        nib.save(nib.Nifti1Image(image, affine), str(folder / f"{case_id}-{name}.nii.gz"))
    nib.save(nib.Nifti1Image(seg, affine), str(folder / f"{case_id}-seg.nii.gz"))
    mask = (radius <= 30 * scale + DEFAULT_MARGIN_MM).astype(np.uint8)
    mask_path = root / f"{case_id}-region.nii.gz"
    nib.save(nib.Nifti1Image(mask, affine), str(mask_path))
    return folder, mask_path


def nnunet_plans(sizes: dict) -> dict:
    """plans.json of nnU-Net v2 (nnUNetPlans, 3d_fullres only) with the given network sizes."""
    stages = sizes["n_stages"]
    resample = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    intensity = {
        "max": 400.0,
        "mean": 150.0,
        "median": 150.0,
        "min": 0.0,
        "percentile_00_5": 10.0,
        "percentile_99_5": 300.0,
        "std": 40.0,
    }
    return {
        "dataset_name": "Dataset137_BraTS2021",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
        "original_median_shape_after_transp": [140, 171, 137],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": sizes["patch_size"],
                "median_image_size_in_voxels": [140.0, 171.0, 137.0],
                "spacing": [1.0, 1.0, 1.0],
                "normalization_schemes": ["ZScoreNormalization"] * 4,
                "use_mask_for_norm": [True] * 4,
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": resample,
                "resampling_fn_seg_kwargs": {**resample, "is_seg": True, "order": 1},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {**resample, "order": 1},
                "architecture": {
                    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                    "arch_kwargs": {
                        "n_stages": stages,
                        "features_per_stage": sizes["features_per_stage"],
                        "conv_op": "torch.nn.modules.conv.Conv3d",
                        "kernel_sizes": [[3, 3, 3]] * stages,
                        "strides": [[1, 1, 1]] + [[2, 2, 2]] * (stages - 1),
                        "n_conv_per_stage": [2] * stages,
                        "n_conv_per_stage_decoder": [2] * (stages - 1),
                        "conv_bias": True,
                        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                        "dropout_op": None,
                        "dropout_op_kwargs": None,
                        "nonlin": "torch.nn.LeakyReLU",
                        "nonlin_kwargs": {"inplace": True},
                    },
                    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
                },
                "batch_dice": False,
            }
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {str(c): intensity for c in range(4)},
    }


def write_nnunet_results(root: Path, small: bool, seed: int = 0) -> Path:
    """A synthetic nnU-Net v2 results folder (…/nnUNetTrainer__nnUNetPlans__3d_fullres) with random weights."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    folder = root / "Dataset137_BraTS2021" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    plans = nnunet_plans(NNUNET_SMALL if small else NNUNET_REAL)
    dataset = {
        "channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "Flair"},
        "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]},
        "regions_class_order": [1, 2, 3],
        "numTraining": 1251,
        "file_ending": ".nii.gz",
    }
    (folder / "plans.json").write_text(json.dumps(plans, indent=1))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=1))
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    torch.manual_seed(seed)
    network = get_network_from_plans(
        arch["network_class_name"],
        arch["arch_kwargs"],
        arch["_kw_requires_import"],
        4,
        3,
        allow_init=True,
        deep_supervision=False,
    )
    checkpoint = {
        "network_weights": network.state_dict(),
        "trainer_name": "nnUNetTrainer",
        "init_args": {"configuration": "3d_fullres", "fold": 0},
        "inference_allowed_mirroring_axes": [0, 1, 2],
    }
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    return folder


def write_model(network_name: str, out: Path, small: bool, seed: int = 0) -> Path:
    """A model folder with random weights: the demo's U-Net or SegFormer, or an imported nnU-Net."""
    import torch

    from MedSegLensLib.models import build_network, default_config, save_model, tiny_config

    if network_name == "nnunet":
        from MedSegLensLib.models.external import import_model

        import_model(write_nnunet_results(out.parent / "nnunet-results", small, seed), "nnunetv2", out, overwrite=True)
        return out
    torch.manual_seed(seed)
    architecture = network_name.split("-")[0]
    config = (tiny_config if small else default_config)(architecture, spacing=(2.0, 2.0, 2.0))
    save_model(build_network(config), config, out, overwrite=True)
    return out


def sae_layer(model, network_name: str) -> tuple[str, int, int]:
    if network_name in SAE_LAYERS:
        return SAE_LAYERS[network_name]
    stages = len(model.network.decoder.stages)
    return f"decoder.stages.{stages - 2}", 0, 16  # the 1/2-resolution decoder stage; latents: 8x its channels


def write_sae(model, network_name: str, out: Path, small: bool) -> tuple[Path, str]:
    """An untrained SAE of the default size (8x the layer's channels where no default exists) at the layer.

    TopK rather than the default BatchTopK: an untrained BatchTopK SAE has no inference threshold and is
    refused by `encode`; TopK selects k latents per voxel, at least the work of a threshold."""
    import torch

    from MedSegLensLib.sae import SAEConfig, SAEInfo, SparseAutoencoder, save_sae

    layer, n_latents, k = sae_layer(model, network_name)
    captured = {}
    module = dict(model.network.named_modules())[layer]

    def hook(_module, _inputs, output) -> None:  # returns None: the output is left as it is
        captured.setdefault("channels", output.shape[1])

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            probe = [min(p, 64) for p in model.config.patch_size]
            model.network.eval()(torch.zeros(1, model.config.in_channels, *probe))
    finally:
        handle.remove()
    channels = int(captured["channels"])
    n_latents = min(n_latents or 8 * channels, 64) if small else (n_latents or 8 * channels)
    sae = SparseAutoencoder(
        SAEConfig(channels, n_latents, min(k, n_latents), "topk"), generator=torch.Generator().manual_seed(0)
    )
    save_sae(sae, out, SAEInfo(model.fingerprint, layer, architecture=model.config.architecture), overwrite=True)
    return out, layer


def save_scales_from_codes(codes, sae_dir: Path) -> int:
    """Typical activations from the case's own codes (the 99th percentile per latent); the most frequent latent."""
    import torch

    from MedSegLensLib.steering import LatentScales, sae_sha256, save_latent_scales

    n = codes.n_latents
    latent, value = codes.latent, codes.value.float()
    typical = torch.zeros(n)
    frequency = torch.bincount(latent, minlength=n).float() / max(1, codes.n_voxels)
    for j in torch.unique(latent).tolist():
        typical[j] = torch.quantile(value[latent == j][:100_000], 0.99)
    save_latent_scales(LatentScales(typical, frequency, 0.99, int(codes.n_voxels), sae_sha256(sae_dir)), sae_dir)
    return int(torch.argmax(frequency))


# -- one network, in its own process ---------------------------------------------------------------------------------
def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: kilobytes


def run_network(
    network_name: str,
    case_dir: Path,
    mask: Path,
    work: Path,
    small: bool,
    budget: str = "default",
    session_only: bool = False,
) -> dict:
    """Every step for one network; seconds per step, the preview's deviation and the process's peak memory.

    `budget`: the session's `cache_budget_gb` ("default": the library's, "none": hold every window).
    `session_only`: skip segment, encode and the latent map (typical activations of 1, latent 0): the steering
    session's time and memory alone, with the peak after each step.
    """
    import torch

    from MedSegLensLib.data import read_case
    from MedSegLensLib.models import load_model
    from MedSegLensLib.sae import encode_case, load_sae
    from MedSegLensLib.steering import LatentScales, RegionSpec, SteeringSession, SteeringSpec, sae_sha256
    from MedSegLensLib.steering.scales import latent_scales_for, save_latent_scales

    work.mkdir(parents=True, exist_ok=True)
    model_dir = write_model(network_name, work / f"model-{network_name}", small)
    model = load_model(model_dir, device="cpu")
    sae_dir, layer = write_sae(model, network_name, work / f"sae-{network_name}", small)
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    peaks: dict[str, float] = {}

    partial = work.parent / f"{network_name}.partial.json"

    def timed(step: str, function):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = function()
        seconds[step], cpu[step] = time.perf_counter() - start, time.process_time() - start_cpu
        peaks[step] = peak_gb()
        partial.write_text(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_gb": peak_gb()}))
        return out

    with torch.no_grad():
        case = timed("read + validate", lambda: read_case(case_dir))
        sae = load_sae(sae_dir)
        if session_only:
            prediction, latent = None, 0
            n = sae.n_latents
            save_latent_scales(LatentScales(torch.ones(n), torch.ones(n) / n, 0.99, 1, sae_sha256(sae_dir)), sae_dir)
        else:
            prediction = timed("segment", lambda: model.predict(case))
            codes = timed("encode", lambda: encode_case(model, sae, case))
            latent = save_scales_from_codes(codes, sae_dir)
            timed("latent map", lambda: codes.latent_map(latent, on="image"))
        scales = latent_scales_for(sae_dir, sae, sae_sha256(sae_dir))
        options = {} if budget == "default" else {"cache_budget_gb": None if budget == "none" else float(budget)}
        session = timed(
            "steer session",
            lambda: SteeringSession(model, sae, case, layer, scales=scales, sae_sha256=sae_sha256(sae_dir), **options),
        )
        region = RegionSpec("mask", path=str(mask))
        # the first steer of a latent also pays what later updates reuse: its codes in every window, the region
        # on the layer lattice, the unsteered labels; a slider move after it is an update
        timed("first steer", lambda: session.steer(SteeringSpec((latent,), (2.0,), "additive", region)))
        spec = SteeringSpec((latent,), (3.0,), "additive", region)
        exact = timed("steer", lambda: session.steer(spec))
        preview = timed("steer preview", lambda: session.steer(spec, exact=False))
        # the part of every update that does not shrink with the region: logits -> labels on the 1 mm case grid
        timed("labels to case grid", lambda: model.to_prediction(exact.logits, session.prepared))
    unsteered = session.unsteered().labels
    cache = session.cache_bytes()
    cache_row = {
        "budget_gb": None if session.window_cache.budget is None else session.window_cache.budget / 1024**3,
        "per_window_gb": cache["per_window"] / 1024**3,
        "held_gb": cache["windows"] / 1024**3,
        "all_windows_gb": cache["per_window"] * session.windows_total / 1024**3,
        "logits_gb": cache["logits"] / 1024**3,
        "rebuilds": session.window_cache.rebuilds,
    }
    if session_only:
        return {
            "network": network_name,
            "case_shape": list(case.shape),
            "seconds": seconds,
            "cpu_seconds": cpu,
            "peak_gb_after": peaks,
            "peak_gb": peak_gb(),
            "cache": cache_row,
            "windows": [exact.windows_recomputed, exact.windows_total],
            "threads": torch.get_num_threads(),
        }
    return {
        "network": network_name,
        "layer": layer,
        "sae_latents": sae.n_latents,
        "model_spacing": model.config.spacing,
        "patch_size": list(model.config.patch_size),
        "case_shape": list(case.shape),
        "parameters": int(sum(p.numel() for p in model.network.parameters())),
        "seconds": seconds,
        "ratios": {k: v / seconds["segment"] for k, v in seconds.items()},
        "cpu_seconds": cpu,
        "cpu_ratios": {k: v / max(cpu["segment"], 1e-9) for k, v in cpu.items()},
        "windows": [exact.windows_recomputed, exact.windows_total],
        "windows_cropped": exact.windows_cropped,
        "preview_windows_cropped": preview.windows_cropped,
        "preview": bool(preview.preview),
        "preview_deviation_voxels": int(np.count_nonzero(preview.prediction.labels != exact.prediction.labels)),
        "steer_changed_voxels": int(np.count_nonzero(exact.prediction.labels != unsteered)),
        "segment_labels_equal_session": bool(np.array_equal(prediction.labels, unsteered)),
        "peak_gb": peak_gb(),
        "peak_gb_after": peaks,
        "cache": cache_row,
        "threads": torch.get_num_threads(),
    }


# -- the table ------------------------------------------------------------------------------------------------------
STEPS = (
    "read + validate",
    "segment",
    "encode",
    "latent map",
    "steer session",
    "first steer",
    "steer",
    "steer preview",
    "labels to case grid",
)


def table(rows: list[dict]) -> str:
    lines = [
        "| network | " + " | ".join(STEPS) + " | peak memory | windows (steer) | preview deviation |",
        "|---" * (len(STEPS) + 4) + "|",
    ]
    for row in rows:
        if "error" in row:
            done = [
                f"{row['seconds'][s]:.2f} s; {row['cpu_seconds'][s]:.2f} CPU-s" if s in row.get("seconds", {}) else "—"
                for s in STEPS
            ]
            peak = f"{row['peak_gb']:.2f} GB so far" if "peak_gb" in row else "—"
            lines.append(f"| {row['network']} | " + " | ".join(done) + f" | {peak} | failed: {row['error']} | |")
            continue
        cells = [
            f"{row['seconds'][s]:.2f} s ({row['ratios'][s]:.2f}×); {row['cpu_seconds'][s]:.2f} CPU-s "
            f"({row['cpu_ratios'][s]:.2f}×)"
            if s in row["seconds"]
            else "—"
            for s in STEPS
        ]
        windows = f"{row['windows'][0]}/{row['windows'][1]} ({row['windows_cropped']} cropped)"
        deviation = (
            f"{row['preview_deviation_voxels']} of {row['steer_changed_voxels']} steered voxels"
            if row["preview"]
            else "— (no preview: exact)"
        )
        lines.append(
            f"| {row['network']} @ `{row['layer']}` | "
            + " | ".join(cells)
            + f" | {row['peak_gb']:.2f} GB | {windows} | {deviation} |"
        )
    return "\n".join(lines)


def verdicts(rows: list[dict]) -> list[str]:
    out = []
    for row in rows:
        if "error" in row:
            continue
        r = row["cpu_ratios"]
        out.append(
            f"{row['network']} (CPU-s ratios): encode {r['encode']:.2f}× (goal ≤ {GOALS['encode']}×) "
            f"{'met' if r['encode'] <= GOALS['encode'] else 'NOT met'}; steer update {r['steer']:.2f}× exact, "
            f"{r['steer preview']:.2f}× {'preview' if row['preview'] else 'exact again (no preview)'} "
            f"(goal ≤ {GOALS['steer']}×) "
            f"{'met' if min(r['steer'], r['steer preview']) <= GOALS['steer'] else 'NOT met'}; "
            f"first steer of a latent {r['first steer']:.2f}×; "
            f"peak {row['peak_gb']:.2f} GB (goal ≤ {MEMORY_GOAL_GB:g} GB) "
            f"{'met' if row['peak_gb'] <= MEMORY_GOAL_GB else 'NOT met'}"
        )
    return out


def run(
    out: Path,
    networks=NETWORKS,
    small: bool = False,
    timeout: float | None = None,
    shape: tuple[int, ...] | None = None,
    child_options: Sequence[str] = (),
) -> list[dict]:
    """The whole benchmark: the case (`shape`, else the real or small one), then each network in a child process
    (given `child_options`: --cache-budget-gb, --session-only, --threads); returns the rows."""
    out.mkdir(parents=True, exist_ok=True)
    case_dir, mask = write_case(out / "case", shape or (SMALL_SHAPE if small else REAL_SHAPE))
    rows = []
    for name in networks:
        result = out / f"{name}.json"
        result.unlink(missing_ok=True)
        (out / f"{name}.partial.json").unlink(missing_ok=True)
        command = (
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                name,
                "--case",
                str(case_dir),
                "--mask",
                str(mask),
                "--out",
                str(out),
            ]
            + (["--small"] if small else [])
            + list(child_options)
        )
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
        }
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
            error = None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["exit"])[-1]
        except subprocess.TimeoutExpired:
            error = f"did not finish within {timeout:g} s"
        partial = out / f"{name}.partial.json"
        if error is None:
            rows.append(json.loads(result.read_text()))
        else:  # the steps that finished before the failure or the timeout
            rows.append(
                {"network": name, "error": error, **(json.loads(partial.read_text()) if partial.is_file() else {})}
            )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/medseglens-real-size"))
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--small", action="store_true", help="tiny case and networks: the same code in seconds")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per network (child process)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--shape", default=None, help="case shape X,Y,Z at 1 mm instead of 240,240,155")
    parser.add_argument(
        "--cache-budget-gb", default="default", help="the steering session's cache budget: GB, none, or default"
    )
    parser.add_argument(
        "--session-only", action="store_true", help="time the steering session only (no segment, encode, map)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads in each child")
    parser.add_argument("--child", choices=NETWORKS + EXTRA_NETWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--case", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mask", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        work = args.out / f"work-{args.child}"
        row = run_network(args.child, args.case, args.mask, work, args.small, args.cache_budget_gb, args.session_only)
        (args.out / f"{args.child}.json").write_text(json.dumps(row, indent=1))
        return 0
    networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = [n for n in networks if n not in NETWORKS + EXTRA_NETWORKS]
    if unknown:
        parser.error(f"unknown network(s) {unknown}; choose from {', '.join(NETWORKS + EXTRA_NETWORKS)}")
    started = time.perf_counter()
    shape = tuple(int(n) for n in args.shape.split(",")) if args.shape else (SMALL_SHAPE if args.small else REAL_SHAPE)
    options = ["--cache-budget-gb", args.cache_budget_gb] + (["--session-only"] if args.session_only else [])
    options += ["--threads", str(args.threads)] if args.threads else []
    rows = run(args.out, networks, args.small, args.timeout, shape, options)
    if args.session_only:  # no segment to take ratios to: the rows as they are
        print(json.dumps(rows, indent=1))
        return 0 if all("error" not in row for row in rows) else 1
    print(
        f"case {shape[0]}x{shape[1]}x{shape[2]} at 1 mm (BraTS 2023 layout); "
        "wall seconds and process CPU seconds (ratio to segment, same process)"
    )
    print(table(rows))
    for line in verdicts(rows):
        print(line)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all("error" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
