"""How much faster stepping through latents is when the overlay node is updated in place.

Baseline (timed in the same run): replacing the overlay with a new node for each
latent (add, then remove the old one). Prints seconds per step and the ratio.
Run: python bench/scene_overlay_stepping.py [--shape 240 240 155] [--steps 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from MedSegLensLib.data import Grid
from MedSegLensLib.scene import (
    add_latent_overlay,
    add_volume_node,
    create_headless_slicer,
    remove_node,
    render_slice,
    update_latent_overlay,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(240, 240, 155))
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    grid = Grid(tuple(args.shape), np.diag([1.0, 1.0, 1.0, 1.0]))
    scene = create_headless_slicer().scene
    mri = add_volume_node(scene, rng.random(grid.shape, dtype=np.float32), grid, "mri")
    maps = [rng.random(grid.shape, dtype=np.float32) ** 8 for _ in range(args.steps)]

    start = time.perf_counter()
    node = None
    for index, activation in enumerate(maps):
        fresh = add_latent_overlay(scene, activation, grid, mri, f"latent {index}", latent=index)
        if node is not None:
            remove_node(scene, node)
        node = fresh
    replace = (time.perf_counter() - start) / args.steps

    start = time.perf_counter()
    for index, activation in enumerate(maps):
        update_latent_overlay(node, activation, grid, latent=index)
    in_place = (time.perf_counter() - start) / args.steps

    start = time.perf_counter()
    for _ in range(3):
        render_slice(scene, mri, node, size=(512, 512))
    render = (time.perf_counter() - start) / 3

    print(f"grid {'x'.join(map(str, grid.shape))}, {args.steps} latents")
    print(f"new node per latent : {replace:.3f} s/step (baseline)")
    print(f"update in place     : {in_place:.3f} s/step ({replace / in_place:.2f}x faster than baseline)")
    print(f"render one 512x512 axial slice with overlay: {render:.3f} s ({render / replace:.2f}x a baseline step)")


if __name__ == "__main__":
    main()
