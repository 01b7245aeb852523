"""Artefact latents: a lattice, window seams, the volume's edge and activation outside the head are flagged;
anatomy-like maps (a smooth blob, noise) are not. Synthetic maps on one small grid: runs in well under a second."""

from __future__ import annotations

import numpy as np
import pytest

from MedSegLensLib.data import Grid
from MedSegLensLib.interpret import LayerCodes, layer_index
from MedSegLensLib.interpret.artefacts import (
    EDGE,
    GRID,
    OUTSIDE,
    PEAK_RATIO_MIN,
    SEAM,
    ArtefactAccumulator,
    ArtefactSettings,
)

SHAPE = (40, 48, 40)
GRID_2MM = Grid(SHAPE, np.diag([2.0, 2.0, 2.0, 1.0]))
WINDOW_STEP = (8, 8, 8)  # image voxels between sliding windows (stride-1 layer: the same in layer voxels)


def brain() -> np.ndarray:
    """An ellipsoid 'head' well inside the volume."""
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    return x**2 / 0.7**2 + y**2 / 0.75**2 + z**2 / 0.7**2 <= 1.0


def planted() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    mask = brain()
    axes = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    centre = [n / 2 for n in SHAPE]
    blob = np.exp(-sum((a - c) ** 2 for a, c in zip(axes, centre)) / (2 * 5.0**2))
    faces = np.zeros(SHAPE, dtype=bool)
    faces[[0, -1]] = True
    faces[:, [0, -1]] = True
    return {
        "lattice": (mask & (axes[0] % 2 == 0)) * rng.uniform(0.8, 1.2, SHAPE),  # every 2nd voxel along one axis
        "blob": blob * (blob > 0.05),  # smooth, inside the brain
        "noise": (mask & (rng.random(SHAPE) < 0.2)) * rng.lognormal(0.0, 1.0, SHAPE),  # white: no peak
        "seams": (mask & (axes[1] % WINDOW_STEP[1] == 0)) * 1.0,  # planes every window step
        "outside": (~mask & (rng.random(SHAPE) < 0.5)) * 1.0 + (mask & (rng.random(SHAPE) < 0.05)) * 0.5,
        "edge": faces * 1.0 + (mask & (axes[2] == 20)) * 0.2,
        "inside_edge_of_brain": (mask & ~np.roll(mask, 3, axis=0)) * 1.0,  # a shell on the brain's border
    }


def scores(window_step=WINDOW_STEP):
    maps = planted()
    names = list(maps)
    accumulator = ArtefactAccumulator(len(names), ArtefactSettings(window_step=window_step))
    codes = LayerCodes.from_dense(np.stack([maps[n] for n in names]).astype(np.float32), GRID_2MM)
    accumulator.add_case(codes, GRID_2MM, layer_index(GRID_2MM, GRID_2MM), brain())
    result = accumulator.finish()
    return {name: (result.kind(i), result.record(i)) for i, name in enumerate(names)}


@pytest.fixture(scope="module")
def flagged():
    return scores()


def test_a_lattice_inside_the_brain_is_flagged_and_a_smooth_blob_is_not(flagged):
    kind, numbers = flagged["lattice"]
    assert kind == GRID and numbers["grid_peak_ratio"] >= 2 * PEAK_RATIO_MIN
    for smooth in ("blob", "inside_edge_of_brain"):
        kind, numbers = flagged[smooth]
        assert kind is None and numbers["grid_peak_ratio"] < 1.0, smooth
    kind, numbers = flagged["noise"]  # a flat spectrum sits near 1, far below the gate
    assert kind is None and 0.5 < numbers["grid_peak_ratio"] < 1.5


def test_activation_mostly_outside_the_brain_is_flagged(flagged):
    kind, numbers = flagged["outside"]
    assert kind == OUTSIDE and numbers["outside_head"] > 0.9
    for inside in ("blob", "lattice", "noise"):
        assert flagged[inside][1]["outside_head"] == 0.0


def test_window_seams_and_the_volume_edge_are_flagged(flagged):
    assert flagged["seams"][0] == SEAM and flagged["seams"][1]["seam_peak_ratio"] >= PEAK_RATIO_MIN
    assert flagged["edge"][0] == EDGE and flagged["edge"][1]["volume_edge"] > 0.5
    assert flagged["blob"][1]["volume_edge"] == 0.0


def test_without_sliding_windows_there_is_no_seam_test():
    unwindowed = scores(window_step=None)
    assert unwindowed["seams"][0] != SEAM and unwindowed["seams"][1]["seam_peak_ratio"] is None
    assert unwindowed["lattice"][0] == GRID
