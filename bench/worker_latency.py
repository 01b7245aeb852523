"""Why the worker is long-lived: a request to a warm worker vs a fresh process per request.

Baseline (timed in the same run): a fresh worker for each `segment` request
(start Python, import torch and MONAI, load the model, read the case, predict,
write), which is what launching a script per request costs. Measured: the
same request sent again to the warm worker (model and case cached). Also the
protocol's round trip (`ping`) to a warm worker. Prints seconds and ratios.
Run: python bench/worker_latency.py [--shape 64 80 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from MedSegLensLib.data import MODALITIES, Grid, write_volume  # noqa: E402
from MedSegLensLib.models import build_network, default_config, save_model  # noqa: E402
from MedSegLensLib.worker import WorkerProcess  # noqa: E402


def make_inputs(folder: Path, shape: tuple[int, int, int]) -> tuple[Path, Path]:
    import torch

    torch.manual_seed(0)
    config = default_config("unet")  # the studied U-Net (untrained weights time the same)
    model_dir = folder / "model"
    save_model(build_network(config), config, model_dir)
    rng = np.random.default_rng(0)
    case_dir = folder / "case-001"
    for modality in MODALITIES:
        write_volume(
            rng.normal(size=shape).astype(np.float32),
            Grid(shape, np.diag([3.0, 3.0, 3.0, 1.0])),
            case_dir / f"case-001-{modality}.nii.gz",
        )
    return model_dir, case_dir


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 80, 64], help="voxels at 3 mm (the demo grid)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, case_dir = make_inputs(Path(tmp), tuple(args.shape))
        params = {"model": str(model_dir), "case": str(case_dir)}

        def fresh_request() -> None:
            with WorkerProcess(threads=args.threads) as worker:
                worker.run("segment", params, timeout=600)

        fresh = [timed(fresh_request) for _ in range(args.repeats)]
        with WorkerProcess(threads=args.threads) as worker:
            worker.run("segment", params, timeout=600)  # warm it up
            warm = [timed(lambda: worker.run("segment", params, timeout=600)) for _ in range(args.repeats)]
            ping = [timed(lambda: worker.run("ping", timeout=60)) for _ in range(20)]
    fresh_s, warm_s, ping_s = statistics.median(fresh), statistics.median(warm), statistics.median(ping)
    print(
        f"case {'x'.join(map(str, args.shape))} at 3 mm, default U-Net, {args.threads} threads, medians of "
        f"{args.repeats}"
    )
    print(f"fresh worker per request (baseline): {fresh_s:7.3f} s")
    print(f"warm worker, same request:           {warm_s:7.3f} s   ratio {warm_s / fresh_s:.3f}")
    print(f"warm worker, ping round trip:        {ping_s * 1000:7.2f} ms  ratio {ping_s / fresh_s:.5f}")


if __name__ == "__main__":
    main()
