#!/usr/bin/env python3
"""Inference speed and peak memory per case: U-Net vs SegFormer, fp32 vs bf16 autocast.

    python bench/inference_speed.py [--unet MODEL_DIR] [--segformer MODEL_DIR] [--case CASE_DIR]

Times the full `SegmentationModel.predict` path (normalise, sliding windows,
labels on the case grid) on one case at the default spacing: a case folder, or
else one synthetic adult case made in memory (synth's default 2 mm grid).
Without model folders the default configs are used with random weights (the
speed does not depend on the weights). Runs are interleaved round-robin so
that a change in machine load hits every configuration alike, and every figure
is printed as a ratio to the U-Net fp32 baseline of the same run.

Peak memory is measured in a fresh process per configuration (memory freed
by an earlier run would otherwise be reused unseen): on the CPU, the rise of
the peak resident memory (VmHWM) during one predict call above the resident
memory before it; on a GPU, torch's peak allocated memory during the call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from MedSegLensLib.data import MODALITIES, Case, read_case  # noqa: E402
from MedSegLensLib.data.geometry import to_canonical  # noqa: E402
from MedSegLensLib.models import SegmentationModel, build_network, default_config, load_model  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unet", help="U-Net model folder (default: default config, random weights)")
    parser.add_argument("--segformer", help="SegFormer model folder (default: default config, random weights)")
    parser.add_argument("--case", help="case folder (default: one synthetic adult case at --spacing)")
    parser.add_argument("--spacing", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: a GPU when present)")
    parser.add_argument("--probe", nargs=2, metavar=("ARCH", "PRECISION"), help=argparse.SUPPRESS)
    return parser.parse_args()


def synthetic_case(spacing: float) -> Case:
    from MedSegLensLib.synth import case_seed, load_templates, population_shift, synthesize_case

    templates = load_templates(spacing)
    made = synthesize_case("bench", population_shift("adult"), templates, case_seed(0, "adult", 0))
    image, grid = to_canonical(np.stack([made.images[m] for m in MODALITIES]).astype(np.float32), made.grid)
    return Case("bench", image, grid, made.grid, population="adult")


def model_for(arch: str, folder: str | None, spacing: float, device) -> SegmentationModel:
    if folder:
        return load_model(folder, device=device)
    config = default_config(arch, spacing=(spacing,) * 3)
    return SegmentationModel(build_network(config), config, fingerprint="random-weights", device=device)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def timed(model: SegmentationModel, case: Case, precision: str) -> float:
    """Seconds of one predict call."""
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.predict(case, precision=precision)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def peak_extra_mib(model: SegmentationModel, case: Case, precision: str) -> float:
    """Memory one predict call needs beyond what the process holds before it (call in a fresh process)."""
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        model.predict(case, precision=precision)
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset VmHWM to the current resident size
    before = _status_kib("VmRSS")
    model.predict(case, precision=precision)
    return (_status_kib("VmHWM") - before) / 1024


def probe_memory(args: argparse.Namespace, arch: str, precision: str) -> float:
    """Run `peak_extra_mib` for one configuration in a child process."""
    command = [
        sys.executable,
        __file__,
        "--probe",
        arch,
        precision,
        "--spacing",
        str(args.spacing),
        "--threads",
        str(args.threads),
    ]
    for option in ("unet", "segformer", "case", "device"):
        if getattr(args, option):
            command += [f"--{option}", str(getattr(args, option))]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"])


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    case = read_case(args.case, with_labels=False) if args.case else synthetic_case(args.spacing)
    device = torch.device(args.device) if args.device else None
    if args.probe:
        arch, precision = args.probe
        print(
            json.dumps(
                {
                    "peak_mib": peak_extra_mib(
                        model_for(arch, getattr(args, arch), args.spacing, device), case, precision
                    )
                }
            )
        )
        return 0
    models = {
        "unet": model_for("unet", args.unet, args.spacing, device),
        "segformer": model_for("segformer", args.segformer, args.spacing, device),
    }
    runs = [(arch, precision) for arch in models for precision in ("fp32", "bf16")]
    for arch, precision in runs:  # warm-up: allocator, oneDNN kernels
        timed(models[arch], case, precision)
    seconds = {run: [] for run in runs}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for run in runs:
            seconds[run].append(timed(models[run[0]], case, run[1]))
    load_after = os.getloadavg()[0]
    memory = {run: probe_memory(args, *run) for run in runs}
    base_s, base_m = statistics.median(seconds[("unet", "fp32")]), memory[("unet", "fp32")]
    shape = "x".join(map(str, case.shape))
    print(
        f"case {case.case_id} {shape} at {case.grid.spacing[0]:g} mm; device {models['unet'].device}; "
        f"{torch.get_num_threads()} thread(s); load average {load_before:.1f} -> {load_after:.1f}; "
        f"time: median of {args.repeats} interleaved runs; memory: one run per fresh process"
    )
    print(f"{'model':<10} {'precision':<9} {'s/case':>8} {'x unet fp32':>12} {'peak MiB':>9} {'x unet fp32':>12}")
    for arch, precision in runs:
        s, m = statistics.median(seconds[(arch, precision)]), memory[(arch, precision)]
        print(f"{arch:<10} {precision:<9} {s:>8.2f} {s / base_s:>12.2f} {m:>9.0f} {m / base_m:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
