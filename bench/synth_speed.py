#!/usr/bin/env python3
"""Generation time per synthetic case, at 2 mm (default) and 1 mm.

    python bench/synth_speed.py [--cases 3] [--spacings 2 1]

Prints seconds per case (in memory, and written to disk as a cohort) for each
spacing and population, and the same as a ratio to a fixed baseline workload
(a 3D Gaussian blur of a 128^3 volume) timed in the same run, because the
machines are shared and absolute times drift with load.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from MedSegLensLib.synth import (  # noqa: E402
    POPULATIONS,
    case_seed,
    generate_cohort,
    load_templates,
    population_shift,
    synthesize_case,  # noqa: E402
)


def baseline_seconds(repeats: int = 5) -> float:
    volume = np.random.default_rng(0).standard_normal((128, 128, 128)).astype(np.float32)
    start = time.perf_counter()
    for _ in range(repeats):
        ndimage.gaussian_filter(volume, 2.0)
    return (time.perf_counter() - start) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--spacings", type=float, nargs="+", default=[2.0, 1.0])
    args = parser.parse_args()
    for spacing in args.spacings:
        templates = load_templates(spacing)  # built and cached before timing
        print(f"spacing {spacing:g} mm, grid {'x'.join(map(str, templates.grid.shape))}")
        for population in POPULATIONS:
            base = baseline_seconds()
            start = time.perf_counter()
            for index in range(args.cases):
                synthesize_case("bench", population_shift(population), templates, case_seed(0, population, index))
            in_memory = (time.perf_counter() - start) / args.cases
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                generate_cohort(population, args.cases, 0, Path(tmp) / "c", spacing=spacing, progress=False)
                on_disk = (time.perf_counter() - start) / args.cases
            print(
                f"  {population:10s} {in_memory:6.2f} s/case in memory ({in_memory / base:5.1f}x baseline), "
                f"{on_disk:6.2f} s/case written with manifest and montage ({on_disk / base:5.1f}x); "
                f"baseline {base:.3f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
