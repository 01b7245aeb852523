"""Planted latents get the right category, confidence, populations and location; sentences are true to the numbers."""

from __future__ import annotations

import re

import numpy as np
import pytest

from interpret_cases import (CSF, DEAD, EDEMA, LEFT_WM, OUTSIDE, PEDIATRIC, RANDOM, RIM, N_LATENTS, cohort_cases,
                             make_cohorts, planted_encoder)
from MedSegLensLib.data import read_volume
from MedSegLensLib.interpret import label_all, latent_records, load_case_maps, LatentScorer
from MedSegLensLib.interpret.describe import PHRASES
from MedSegLensLib.synth import ATLAS_LABELS


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    cases = cohort_cases(make_cohorts(tmp_path_factory.mktemp("cohorts")))
    scorer = LatentScorer(N_LATENTS)
    encoded = {}
    for files in cases:
        case, maps = load_case_maps(files)
        codes = planted_encoder(case)
        encoded[case.case_id] = (codes, case)
        scorer.add_case(maps, codes)
    table = scorer.finish()
    labels = label_all(table)
    return table, labels, latent_records(table, labels), cases, encoded


@pytest.mark.parametrize("latent, category", [(EDEMA, "edema"), (RIM, "enhancing tumour"), (CSF, "healthy CSF")])
def test_a_latent_planted_on_one_class_gets_that_category_with_high_confidence(labelled, latent, category):
    table, labels, records, _, _ = labelled
    assert labels[latent].category == category and labels[latent].matched
    assert labels[latent].level == "high" and labels[latent].confidence >= 0.5
    # and no other planted latent claims this category with high confidence
    rivals = [l for l in range(N_LATENTS) if l != latent and labels[l].category == category and labels[l].level == "high"]
    assert rivals == []


def test_a_latent_on_half_a_class_is_named_with_less_confidence(labelled):
    """Left-hemisphere white matter: half of WM, so the voxel AUROC (ties at zero) caps the confidence."""
    table, labels, records, _, _ = labelled
    assert labels[LEFT_WM].category == "healthy white matter" and labels[LEFT_WM].level == "medium"
    assert table.score("precision", LEFT_WM, "WM") > 0.95 and table.score("recall", LEFT_WM, "WM") < 0.6


def test_a_random_latent_is_background_other_with_low_confidence(labelled):
    table, labels, records, _, _ = labelled
    label = labels[RANDOM]
    assert label.category == "background/other" and not label.matched and label.level == "low"
    assert max(abs(table.metrics["auroc"][RANDOM] - 0.5)) < 0.05


def test_outside_the_brain_and_never_active(labelled):
    table, labels, records, _, _ = labelled
    assert labels[OUTSIDE].category == "background/other" and labels[OUTSIDE].target == "background"
    assert labels[OUTSIDE].matched and labels[OUTSIDE].level == "high"
    assert records[OUTSIDE]["location"]["outside_brain"] > 0.95
    assert labels[DEAD].category == "inactive" and not records[DEAD]["active"]
    assert records[DEAD]["description"] == f"never active on these {len(table.case_ids)} cases."


def test_populations_where_a_latent_fires(labelled):
    table, labels, records, cases, _ = labelled
    populations = records[PEDIATRIC]["populations"]
    assert populations["pediatric"]["fired"] == populations["pediatric"]["cases"] == 3
    assert populations["adult"]["fired"] == 0 and populations["healthy"]["fired"] == 0
    assert populations["adult"]["cases"] == 4 and populations["healthy"]["cases"] == 2
    assert records[CSF]["populations"]["healthy"]["fired"] == 2
    # the edema latent is faintly active in healthy brains, but never at the level that marks edema
    healthy = records[EDEMA]["populations"]["healthy"]
    assert healthy["fired"] == 0 and healthy["mean_active_ml"] > 10 * table.settings.min_firing_ml


def test_location_agrees_with_the_atlas_files(labelled):
    """Left share of the left-white-matter latent (above its threshold), from the atlas files and the planted maps."""
    table, labels, records, cases, encoded = labelled
    threshold = records[LEFT_WM]["firing_threshold"]
    left_labels = [code for code, name in ATLAS_LABELS.items() if name.startswith("left ")]
    left_mass = brain_mass = 0.0
    for files in cases:
        codes, case = encoded[files.case_id]
        heat = codes.image_map(LEFT_WM, case.grid).astype(np.float64)
        heat = np.where(heat >= threshold, heat, 0.0)
        atlas = read_volume(files.atlas).array  # synth writes canonical RAS grids: same voxel order as the case
        left_mass += heat[np.isin(atlas, left_labels)].sum()
        brain_mass += heat[atlas > 0].sum()
    location = records[LEFT_WM]["location"]
    assert location["left"] == pytest.approx(left_mass / brain_mass, abs=1e-3)
    assert location["left"] > 0.9
    assert "left hemisphere" in records[LEFT_WM]["description"] or "the left " in records[LEFT_WM]["description"]


SCORE = re.compile(r"AUROC (\d\.\d\d), Dice (\d\.\d\d)")
FIRES = re.compile(r"(\d+) of (\d+) (\w+)")
PERCENT = re.compile(r"(\d+) %")


def fired_cases(latent: int, threshold: float, cases, encoded, min_ml: float) -> dict[str, tuple[int, int]]:
    """Per population (fired, cases), from the planted image maps: volume at or above the threshold."""
    out: dict[str, list[int]] = {}
    for files in cases:
        codes, case = encoded[files.case_id]
        heat = codes.image_map(latent, case.grid).astype(np.float64)  # compared in float64, as scored
        volume = np.count_nonzero((heat >= threshold) & (heat > 0)) * np.prod(case.grid.spacing) / 1000
        counts = out.setdefault(case.population, [0, 0])
        counts[0] += int(volume >= min_ml)
        counts[1] += 1
    return {p: tuple(c) for p, c in out.items()}


def test_every_sentence_is_true_to_the_score_table(labelled):
    table, labels, records, cases, encoded = labelled
    for latent, record in enumerate(records):
        sentence = record["description"]
        if not record["active"]:
            continue
        target = labels[latent].target
        threshold = table.score("threshold", latent, target)
        assert record["firing_threshold"] == pytest.approx(threshold, abs=1e-4)
        (auroc, dice), = SCORE.findall(sentence)
        assert float(auroc) == pytest.approx(table.score("auroc", latent, target), abs=0.0051)
        assert float(dice) == pytest.approx(table.score("dice", latent, target), abs=0.0051)
        if labels[latent].matched:
            assert sentence.startswith(PHRASES[target].format(shell_mm=table.settings.shell_mm))
        else:
            assert sentence.startswith("no clear tissue match")
        claimed = {name: (int(k), int(n)) for k, n, name in FIRES.findall(sentence)}
        assert claimed == fired_cases(latent, threshold, cases, encoded, table.settings.min_firing_ml)
        location = record["location"]
        shares = [location["outside_brain"]] + [location[s] for s in ("left", "right")] + \
                 [r["share"] for r in location["regions"]]
        for percent in PERCENT.findall(sentence):
            assert any(abs(int(percent) - 100 * s) <= 0.5 + 1e-6 for s in shares), (sentence, percent)
        if "mostly outside the brain" in sentence:
            assert location["outside_brain"] >= 0.5
        elif "mostly in the" in sentence and "hemisphere" not in sentence:
            assert location["regions"][0]["share"] >= 0.5
