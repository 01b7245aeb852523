"""Planted latents get the right category, confidence, populations and location; labels hold on held-out cases;
artefacts are named as such; sentences are true to the numbers."""

from __future__ import annotations

import re

import numpy as np
import pytest
from interpret_cases import (
    CSF,
    DEAD,
    EDEMA,
    EDEMA_LATTICE,
    LATTICE,
    LEFT_WM,
    N_LATENTS,
    OUTSIDE,
    PEDIATRIC,
    RANDOM,
    RIM,
    cohort_cases,
    make_cohorts,
    planted_encoder,
)

from MedSegLensLib.data import read_volume
from MedSegLensLib.interpret import (
    UNLABELLED,
    LatentScorer,
    LayerCodes,
    held_out_cases,
    label_all,
    latent_records,
    load_case_maps,
)
from MedSegLensLib.interpret.artefacts import EDGE, GRID, SEAM, ArtefactSettings
from MedSegLensLib.interpret.artefacts import OUTSIDE as OUTSIDE_HEAD
from MedSegLensLib.interpret.categories import LOCATED_LIFT_MIN
from MedSegLensLib.interpret.describe import PHRASES
from MedSegLensLib.interpret.scoring import ScoringSettings
from MedSegLensLib.synth import ATLAS_LABELS


def split_of(cases) -> frozenset[str]:
    return held_out_cases((files.case_id, files.population) for files in cases)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    cases = cohort_cases(make_cohorts(tmp_path_factory.mktemp("cohorts")))
    scorer = LatentScorer(N_LATENTS, held_out=split_of(cases))
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
    rivals = [
        other
        for other in range(N_LATENTS)
        if other != latent and labels[other].category == category and labels[other].level == "high"
    ]
    assert rivals == []


def test_a_latent_on_half_a_class_is_named_with_less_confidence(labelled):
    """Left-hemisphere white matter: half of WM, so the voxel AUROC (ties at zero) caps the confidence."""
    table, labels, records, _, _ = labelled
    assert labels[LEFT_WM].category == "healthy white matter" and labels[LEFT_WM].level == "medium"
    assert table.score("precision", LEFT_WM, "WM") > 0.95 and table.score("recall", LEFT_WM, "WM") < 0.6


def test_a_random_latent_gets_no_anatomy_label(labelled):
    """Random over the whole volume: most of its activation is in the air around the head, so it is that artefact."""
    table, labels, records, _, _ = labelled
    label = labels[RANDOM]
    assert not label.matched and not label.validated and label.level == "low"
    assert label.category == OUTSIDE_HEAD and records[RANDOM]["artefact"]["outside_head"] > 0.5
    assert max(abs(table.metrics["auroc"][RANDOM] - 0.5)) < 0.05


def test_outside_the_brain_is_an_artefact_and_never_active_is_inactive(labelled):
    table, labels, records, _, _ = labelled
    assert labels[OUTSIDE].category == OUTSIDE_HEAD and labels[OUTSIDE].target == "background"
    assert labels[OUTSIDE].matched and labels[OUTSIDE].validated and labels[OUTSIDE].level == "high"
    assert records[OUTSIDE]["location"]["outside_brain"] > 0.95
    assert records[OUTSIDE]["artefact"]["outside_head"] > 0.95
    assert records[OUTSIDE]["description"].startswith("outside the head (100 % of its activation)")
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


ARTEFACT_OPENINGS = {
    GRID: "a lattice (",
    SEAM: "window seams (",
    EDGE: "on the volume's edge (",
    OUTSIDE_HEAD: "outside the head (",
}
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
        t = table.targets.index(target)
        threshold = table.fit_metrics["threshold"][latent, t]  # chosen on the fit cases
        assert record["firing_threshold"] == pytest.approx(threshold, abs=1e-4)
        assert record["held_out"]["threshold"] == pytest.approx(threshold, abs=1e-4)
        ((auroc, dice),) = SCORE.findall(sentence)
        assert float(auroc) == pytest.approx(table.held_out_metrics["auroc"][latent, t], abs=0.0051)
        assert float(dice) == pytest.approx(table.held_out_metrics["dice"][latent, t], abs=0.0051)
        if record["artefact"]["kind"] and record["category"] == record["artefact"]["kind"]:
            assert sentence.startswith(ARTEFACT_OPENINGS[record["artefact"]["kind"]])
        elif labels[latent].validated:
            assert sentence.startswith(PHRASES[target].format(shell_mm=table.settings.shell_mm))
            if record["artefact"]["kind"]:  # a named feature drawn with a lattice says so
                assert record["artefact"]["kind"] in (GRID, SEAM) and ", drawn as a lattice" in sentence
        else:
            assert sentence.startswith("no label holds on held-out cases") and record["category"] == UNLABELLED
        claimed = {name: (int(k), int(n)) for k, n, name in FIRES.findall(sentence)}
        assert claimed == fired_cases(latent, threshold, cases, encoded, table.settings.min_firing_ml)
        location = record["location"]
        shares = (
            [location["outside_brain"]]
            + [location[s] for s in ("left", "right", "midline")]
            + [r["share"] for r in location["regions"]]
            + [record["artefact"][k] for k in ("outside_head", "volume_edge")]
        )
        for percent in PERCENT.findall(sentence):
            assert any(abs(int(percent) - 100 * s) <= 0.5 + 1e-6 for s in shares), (sentence, percent)
        if "mostly outside the brain" in sentence:
            assert location["outside_brain"] >= 0.5
        elif "mostly in the" in sentence and "hemisphere" not in sentence:
            assert location["regions"][0]["share"] >= 0.5


HELD_OUT_TARGETS = {
    "ED": lambda case: case.label == 2,
    "WM": lambda case: (case.tissue == 3) & (case.label == 0),
    "GM": lambda case: (case.tissue == 2) & (case.label == 0),
}


@pytest.mark.parametrize("latent, target", [(EDEMA, "ED"), (LEFT_WM, "WM"), (LATTICE, "GM")])
def test_held_out_scores_are_those_of_the_fit_threshold_on_the_held_out_cases(labelled, latent, target):
    """Recomputed from the planted image maps of the held-out cases only, at the threshold of the fit cases."""
    table, labels, records, cases, encoded = labelled
    held_out = split_of(cases)
    assert 0 < len(held_out) < len(cases) and labels[latent].target == target
    threshold = records[latent]["held_out"]["threshold"]
    tp = predicted = positives = 0
    for case_id in held_out:
        codes, case = encoded[case_id]
        fired = codes.image_map(latent, case.grid).astype(np.float64) >= threshold
        truth = HELD_OUT_TARGETS[target](case)
        tp, predicted, positives = tp + (fired & truth).sum(), predicted + fired.sum(), positives + truth.sum()
    held = records[latent]["held_out"]
    assert held["dice"] == pytest.approx(2 * tp / (predicted + positives), abs=1e-4)
    assert held["precision"] == pytest.approx(tp / predicted, abs=1e-4)
    assert held["cases"] == len(held_out)


def test_a_lattice_is_named_an_artefact_although_it_would_pass_as_grey_matter(labelled):
    """The lattice on every second voxel of the brain overlaps grey matter well enough to be validated: the
    artefact test, not the score gates, keeps it from being called anatomy."""
    table, labels, records, _, _ = labelled
    assert labels[LATTICE].matched and labels[LATTICE].validated and labels[LATTICE].target == "GM"
    assert labels[LATTICE].category == GRID and records[LATTICE]["artefact"]["grid_peak_ratio"] >= 3.0
    assert records[LATTICE]["description"].startswith("a lattice (spectral peak")
    smooth = [EDEMA, RIM, CSF, LEFT_WM, PEDIATRIC]  # (EDEMA_LATTICE: next test)
    assert all(
        records[latent]["artefact"]["kind"] is None and records[latent]["artefact"]["grid_peak_ratio"] < 1.0
        for latent in smooth
    )


def test_a_label_that_does_not_hold_on_held_out_cases_is_unlabelled(labelled):
    """Edema on the fit cases, CSF on the held-out ones: matched on the fit cases, refused on the held-out ones;
    the same latent planted on edema everywhere (EDEMA) is validated."""
    table, labels, records, cases, encoded = labelled
    held_out = split_of(cases)

    def edema_then_csf(case_id, case):
        return (case.tissue == 1) & (case.label == 0) if case_id in held_out else case.label == 2

    _, label = score_one_latent(cases, encoded, edema_then_csf)
    assert label.target == "ED" and label.matched and not label.validated and label.category == UNLABELLED
    assert labels[EDEMA].validated and labels[EDEMA].category == "edema"


def score_one_latent(cases, encoded, mask_of) -> tuple:
    """A one-latent scorer over the cohort with the test split; mask_of(case_id, case) -> where it is active."""
    scorer = LatentScorer(1, held_out=split_of(cases))
    for files in cases:
        codes, case = encoded[files.case_id]
        mask = mask_of(files.case_id, case)
        scorer.add_case(load_case_maps(files)[1], LayerCodes.from_dense(mask[None].astype(np.float32), case.grid))
    table = scorer.finish()
    return table, label_all(table)[0]


def test_a_small_selective_latent_is_named_by_the_selectivity_path(labelled):
    """The most anterior 8 % of the white matter in every case: precision 1, recall ~0.08, so kappa and AUROC
    stay below the coverage gates, but what it marks is white matter (lift >> 2) in every held-out case."""
    _, _, _, cases, encoded = labelled

    def front_of_white_matter(case_id, case):
        white = (case.tissue == 3) & (case.label == 0)
        y = np.nonzero(white)[1]
        return white & (np.arange(case.shape[1]) <= np.quantile(y, 0.08))[None, :, None]

    table, label = score_one_latent(cases, encoded, front_of_white_matter)
    held = {m: table.held_out_metrics[m][0, table.targets.index("WM")] for m in ("kappa", "auroc", "precision")}
    assert held["auroc"] < 0.6 and held["precision"] == pytest.approx(1.0)  # coverage fails, selectivity holds
    assert label.target == "WM" and label.validated and label.category == "healthy white matter"
    assert label.level == "low"


def test_the_held_out_split_is_by_case_id_balanced_per_population_and_order_free():
    pairs = [(f"case-{i}", "adult" if i < 7 else "healthy") for i in range(10)]
    split = held_out_cases(pairs)
    assert split == held_out_cases(reversed(pairs)) == held_out_cases(pairs)
    assert sum(1 for c, p in pairs if c in split and p == "adult") == 3
    assert sum(1 for c, p in pairs if c in split and p == "healthy") == 1
    assert held_out_cases([("only-case", "ssa")]) == frozenset()


def test_a_feature_drawn_with_the_lattice_keeps_its_name_and_its_texture_is_recorded(labelled):
    """The whole tumour on every second layer voxel: periodic like the brain-wide lattice, but concentrated on the
    tumour (held-out lift far above LOCATED_LIFT_MIN; the lattice reaches about 5 for grey matter). At 6 mm the
    planted tumour spans only a few layer voxels, so its spectral peak (about 2.6x) stays under the default 3x:
    the test lowers the bar to 2x, as a real decoder layer's tumour latents clear 3x (docs/interpret.md)."""
    _, _, _, cases, encoded = labelled
    settings = ScoringSettings(artefacts=ArtefactSettings(peak_ratio_min=2.0))
    scorer = LatentScorer(N_LATENTS, settings, held_out=split_of(cases))
    for files in cases:
        scorer.add_case(load_case_maps(files)[1], encoded[files.case_id][0])
    table = scorer.finish()
    labels = label_all(table)
    records = latent_records(table, labels)
    record = records[EDEMA_LATTICE]
    assert record["artefact"]["kind"] == GRID and labels[EDEMA_LATTICE].validated
    assert record["category"] == "edema" and record["held_out"]["lift"] >= LOCATED_LIFT_MIN
    assert ", drawn as a lattice (spectral peak" in record["description"]
    assert records[LATTICE]["category"] == GRID and records[LATTICE]["held_out"]["lift"] < LOCATED_LIFT_MIN
