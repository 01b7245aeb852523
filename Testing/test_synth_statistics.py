"""Population differences, measured on small generated cohorts (4 mm, 12 cases each).

Each claim of docs/synth.md about how the populations differ is checked on
images and label maps read back from disk, not on the generator's parameters.
"""

from __future__ import annotations

import pytest

from MedSegLensLib.data import discover_cohort
from MedSegLensLib.synth import generate_cohort
from MedSegLensLib.synth.statistics import case_statistics, summarise

pytestmark = pytest.mark.slow  # 40 cases generated and read back: ~30-60 s on 2 busy cores

SPACING = 4.0
CASES = 12


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    root = tmp_path_factory.mktemp("populations")
    out = {}
    for population in ("adult", "pediatric", "ssa", "healthy"):
        count = CASES if population != "healthy" else 4
        folder = generate_cohort(population, count, 11, root / population, spacing=SPACING, progress=False).folder
        out[population] = [case_statistics(files) for files in discover_cohort(folder)]
    return out


@pytest.fixture(scope="module")
def means(cohorts):
    return {population: summarise(rows) for population, rows in cohorts.items()}


def test_ssa_scans_are_noisier(cohorts, means):
    assert means["ssa"]["snr"] < 0.6 * means["adult"]["snr"]
    assert min(r["snr"] for r in cohorts["adult"]) > max(r["snr"] for r in cohorts["ssa"])


def test_ssa_tumours_are_larger_with_more_edema(means):
    assert means["ssa"]["wt_cc"] > 1.3 * means["adult"]["wt_cc"]
    assert means["ssa"]["ed_cc"] > 1.3 * means["adult"]["ed_cc"]


def test_pediatric_heads_are_smaller_and_tumours_inferior_and_midline(cohorts, means):
    pediatric, adult = means["pediatric"], means["adult"]
    assert pediatric["brain_cc"] < 0.8 * adult["brain_cc"]
    assert pediatric["centre_z_mm"] < adult["centre_z_mm"] - 15
    assert pediatric["centre_abs_x_mm"] < 0.5 * adult["centre_abs_x_mm"]
    assert sum(r["infratentorial"] for r in cohorts["pediatric"]) >= CASES // 3
    assert sum(r["infratentorial"] for r in cohorts["adult"]) == 0


def test_pediatric_tumours_have_little_edema(means):
    assert means["pediatric"]["ed_cc"] < 0.4 * means["adult"]["ed_cc"]


def test_enhancement_is_strong_in_adults_and_weaker_elsewhere(means):
    assert means["adult"]["et_contrast"] > 1.4
    assert means["ssa"]["et_contrast"] < means["adult"]["et_contrast"] - 0.15
    assert means["pediatric"]["et_contrast"] < means["adult"]["et_contrast"] - 0.15


def test_healthy_cases_have_no_tumour_and_adult_sized_brains(cohorts, means):
    assert all(r["wt_cc"] == 0 for r in cohorts["healthy"])
    assert means["healthy"]["brain_cc"] == pytest.approx(means["adult"]["brain_cc"], rel=0.1)
