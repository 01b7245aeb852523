"""Population differences, measured on small generated cohorts (4 mm, 12 cases each).

Each claim of docs/synth.md about how the populations differ is checked here
on images and label maps read back from disk, not on the generator's parameters.
"""

from __future__ import annotations

import numpy as np
import pytest

from MedSegLensLib.data import discover_cohort
from MedSegLensLib.synth import ATLAS_LABELS, generate_cohort
from MedSegLensLib.synth.location_atlas import PLACEMENT_GROUPS

SPACING = 4.0
CASES = 12
INFRATENTORIAL = {ATLAS_LABELS[c] for c in PLACEMENT_GROUPS["cerebellum"] + PLACEMENT_GROUPS["brainstem"]}


def measure(case) -> dict:
    """Per-case statistics from the files: SNR, volumes, tumour centroid, enhancement."""
    voxel_cc = SPACING**3 / 1000
    brain, wm = case.tissue > 0, (case.tissue == 3) & (case.label == 0)
    t1 = case.image[0]
    stats = {
        "snr": float(np.mean([np.mean(ch[wm]) / np.std(ch[wm]) for ch in case.image])),
        "brain_cc": float(brain.sum() * voxel_cc),
        "wt_cc": float((case.label > 0).sum() * voxel_cc),
        "ed_cc": float((case.label == 2).sum() * voxel_cc),
    }
    if case.label.any():
        index = np.argwhere(case.label > 0).mean(axis=0)
        centre = case.grid.affine[:3, :3] @ index + case.grid.affine[:3, 3]
        stats.update(centre_x=float(abs(centre[0])), centre_z=float(centre[2]))
        enhancing = case.label == 3
        if enhancing.sum() >= 3:
            t1c = case.image[1]
            stats["et_contrast"] = float(np.median(t1c[enhancing]) / np.median(t1c[wm]) /
                                         (np.median(t1[enhancing]) / np.median(t1[wm])))
    return stats


@pytest.fixture(scope="module")
def populations(tmp_path_factory):
    root = tmp_path_factory.mktemp("populations")
    out = {}
    for population in ("adult", "pediatric", "ssa", "healthy"):
        folder = generate_cohort(population, CASES if population != "healthy" else 4, 11, root / population,
                                 spacing=SPACING, progress=False).folder
        cases = [files.load() for files in discover_cohort(folder)]
        out[population] = {"cases": cases, "stats": [measure(c) for c in cases]}
    return out


def mean(populations, population: str, key: str) -> float:
    return float(np.mean([s[key] for s in populations[population]["stats"] if key in s]))


def test_ssa_scans_are_noisier(populations):
    adult, ssa = mean(populations, "adult", "snr"), mean(populations, "ssa", "snr")
    assert ssa < 0.6 * adult
    assert min(s["snr"] for s in populations["adult"]["stats"]) > max(s["snr"] for s in populations["ssa"]["stats"])


def test_ssa_tumours_are_larger_with_more_edema(populations):
    assert mean(populations, "ssa", "wt_cc") > 1.5 * mean(populations, "adult", "wt_cc")
    assert mean(populations, "ssa", "ed_cc") > 1.5 * mean(populations, "adult", "ed_cc")


def test_pediatric_heads_are_smaller_and_tumours_inferior_midline_with_little_edema(populations):
    assert mean(populations, "pediatric", "brain_cc") < 0.8 * mean(populations, "adult", "brain_cc")
    assert mean(populations, "pediatric", "centre_z") < mean(populations, "adult", "centre_z") - 15
    assert mean(populations, "pediatric", "centre_x") < 0.5 * mean(populations, "adult", "centre_x")
    assert mean(populations, "pediatric", "ed_cc") < 0.3 * mean(populations, "adult", "ed_cc")
    regions = [populations["pediatric"]["cases"][i] for i in range(CASES)]
    assert regions  # the centroid's atlas region says "posterior fossa" for most pediatric tumours
    fossa = [_centre_region(c) in INFRATENTORIAL for c in regions]
    adult_fossa = [_centre_region(c) in INFRATENTORIAL for c in populations["adult"]["cases"]]
    assert sum(fossa) >= CASES // 3 and sum(adult_fossa) == 0


def test_enhancement_is_strong_in_adults_and_weak_elsewhere(populations):
    adult = mean(populations, "adult", "et_contrast")
    assert adult > 1.4
    assert mean(populations, "ssa", "et_contrast") < adult - 0.2


def test_healthy_cases_have_no_tumour(populations):
    assert all(not c.label.any() for c in populations["healthy"]["cases"])
    assert mean(populations, "healthy", "brain_cc") == pytest.approx(mean(populations, "adult", "brain_cc"), rel=0.1)


def _centre_region(case) -> str:
    from MedSegLensLib.data import read_volume

    atlas = read_volume(case.files["seg"].replace("-seg.", "-atlas."), kind="label").array
    index = tuple(int(round(v)) for v in np.argwhere(case.label > 0).mean(axis=0))
    return ATLAS_LABELS[int(atlas[index])]
