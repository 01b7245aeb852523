"""The diffing studies as Python calls (the demo pipeline's API): paths in, one folder out."""

from __future__ import annotations

import json

import pytest
from diff_cases import axis_sae, save_planted_sae, write_planted_store

from MedSegLensLib.diffing import ArchDiffSettings, PopulationDiffSettings, architecture_study, population_study
from MedSegLensLib.errors import OutputError
from MedSegLensLib.report import load_section

RATES = {
    0: lambda pop, s, rng: 0.5 if s == "WM" else 0.0,  # shared
    1: lambda pop, s, rng: 0.4 if (pop == "pediatric" and s == "WM") else 0.0,  # pediatric-specific
}


def test_population_study_writes_its_folder_reports_progress_and_names_the_call(tmp_path):
    store = write_planted_store(tmp_path / "store", 4, {"adult": 4, "pediatric": 4}, lambda p, s: 60, RATES, seed=2)
    sae_dir = save_planted_sae(axis_sae(4), tmp_path / "sae")
    seen = []
    record = population_study(
        sae_dir,
        store.path,
        tmp_path / "out",
        settings=PopulationDiffSettings(n_boot=200),
        progress=lambda stage, done, total: seen.append((stage, done, total)),
    )
    assert record["category"][:2] == ["shared", "specific"]
    assert record["summary"]["per_population"]["pediatric"]["enriched"] == 1
    assert json.loads((tmp_path / "out" / "populations.json").read_text())["category"] == record["category"]
    assert seen and seen[-1] == ("encoding store", store.n_rows, store.n_rows)
    command = load_section(tmp_path / "out").command
    assert command.startswith("MedSegLensLib.diffing.population_study(") and str(store.path) in command
    with pytest.raises(OutputError, match="already exists"):
        population_study(sae_dir, store.path, tmp_path / "out")


def test_architecture_study_refuses_an_existing_folder_before_loading_anything(tmp_path):
    (tmp_path / "out").mkdir()
    missing = tmp_path / "no-such-model"
    with pytest.raises(OutputError, match="already exists"):
        architecture_study(
            missing,
            missing,
            missing,
            missing,
            [tmp_path],
            tmp_path / "out",
            settings=ArchDiffSettings(n_permutations=2),
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no partial folder left behind
