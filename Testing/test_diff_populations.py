"""Population diffing with a pooled SAE: planted shared, specific, null and absent latents."""

from __future__ import annotations

import numpy as np
import pytest
from diff_cases import axis_sae, write_planted_store

from MedSegLensLib.diffing import PopulationDiffSettings, accumulate_usage, diff_populations
from MedSegLensLib.diffing.stats import benjamini_hochberg, case_bootstrap_weights
from MedSegLensLib.errors import CompatibilityError, ParameterError

SHARED_WM, SSA_ONLY_ED, LOST_IN_SSA, ABSENT = 0, 1, 2, 3
NULLS = list(range(4, 44))  # forty latents that fire alike everywhere, with case-to-case variation
D = 48


def rows_per_stratum(population: str, stratum: str) -> int:
    """Very different stratum mixes: pediatric mostly white matter, SSA mostly edema, no CSF in adults."""
    table = {
        "adult": {"GM": 200, "WM": 40, "ED": 60, "ET": 60, "NCR": 40},
        "pediatric": {"GM": 30, "WM": 240, "ED": 40, "ET": 40, "NCR": 30, "CSF": 40},
        "ssa": {"GM": 80, "WM": 60, "ED": 200, "ET": 30, "NCR": 30, "CSF": 40},
    }
    return table[population].get(stratum, 0)


def rates():
    out = {
        SHARED_WM: lambda pop, s, rng: 0.5 if s == "WM" else 0.0,
        SSA_ONLY_ED: lambda pop, s, rng: 0.4 if (pop == "ssa" and s == "ED") else 0.0,
        LOST_IN_SSA: lambda pop, s, rng: 0.3 if (pop != "ssa" and s == "GM") else 0.0,
    }
    for j in NULLS:
        out[j] = lambda pop, s, rng: 0.1 * rng.uniform(0.5, 1.5)  # case-level variation, same law everywhere
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_planted_store(
        tmp_path_factory.mktemp("pop") / "store",
        D,
        {"adult": 8, "pediatric": 8, "ssa": 8},
        rows_per_stratum,
        rates(),
        seed=1,
    )


@pytest.fixture(scope="module")
def usage(store):
    return accumulate_usage(axis_sae(D), store, batch_size=1000)


def test_usage_tallies_equal_a_direct_count(store, usage):
    sae = axis_sae(D)
    fired = np.zeros_like(usage.fired, dtype=np.float64)
    rows = np.zeros_like(usage.rows)
    for x, meta in store.scan_with_metadata(100000):
        dense = sae.encode(x).numpy()
        for c, s, row in zip(meta["case_index"].numpy(), meta["stratum"].numpy(), dense):
            rows[c, s] += 1
            fired[c, s] += row > 0
    assert np.array_equal(rows, usage.rows)
    assert np.array_equal(fired, usage.fired)
    assert usage.populations.tolist() == ["adult"] * 8 + ["pediatric"] * 8 + ["ssa"] * 8


def test_planted_latents_are_classified_and_nulls_are_not_called_specific(usage):
    diff = diff_populations(usage, PopulationDiffSettings(n_boot=400, seed=0))
    assert diff.category[SHARED_WM] == "shared"
    assert diff.category[SSA_ONLY_ED] == "specific" and diff.enriched_in[SSA_ONLY_ED] == ["ssa"]
    assert diff.category[LOST_IN_SSA] == "specific" and diff.depleted_in[LOST_IN_SSA] == ["ssa"]
    assert diff.category[ABSENT] == "absent"
    assert all(diff.category[j] != "specific" for j in NULLS)  # BH keeps 40 nulls x 6 tests from being called
    assert sum(diff.category[j] == "shared" for j in NULLS) >= 30
    assert all(diff.category[j] == "absent" for j in range(44, D))
    summary = diff.backbone_summary()
    assert summary["per_population"]["ssa"]["enriched"] == 1 and summary["per_population"]["ssa"]["depleted"] == 1
    assert summary["shared"] + summary["specific"] + summary["inconclusive"] + summary["absent"] == D
    assert summary["inconclusive_rare"] + summary["inconclusive_not_equivalent"] == summary["inconclusive"]


def test_matched_strata_remove_the_stratum_mix_confound(usage):
    """The white-matter latent fires in half of WM rows everywhere, but pediatric rows are mostly WM."""
    pooled = {
        p: usage.fired[usage.populations == p][:, :, SHARED_WM].sum() / usage.rows[usage.populations == p].sum()
        for p in ("adult", "pediatric")
    }
    assert pooled["pediatric"] / pooled["adult"] > 3  # a naive pooled ratio would call it pediatric-specific
    diff = diff_populations(usage, PopulationDiffSettings(n_boot=400, seed=0))
    for contrast in diff.contrasts.values():
        assert contrast.ci_low[SHARED_WM] < 0 < contrast.ci_high[SHARED_WM]
        assert abs(contrast.log_ratio[SHARED_WM]) < 0.2
    assert "CSF" not in diff.contrasts["adult"].strata  # adults have no CSF rows: not compared there
    ssa = diff.contrasts["ssa"]
    assert ssa.log_ratio[SSA_ONLY_ED] > np.log(10) and ssa.activation_ci_low[SSA_ONLY_ED] > np.log(2)


def test_bootstrap_is_over_cases_and_reproducible(usage):
    groups = usage.populations
    weights = case_bootstrap_weights(groups, 50, seed=3)
    for population in ("adult", "pediatric", "ssa"):
        assert np.all(weights[:, groups == population].sum(1) == 8)  # each population keeps its case count
    assert np.array_equal(weights, case_bootstrap_weights(groups, 50, seed=3))
    first = diff_populations(usage, PopulationDiffSettings(n_boot=100, seed=7))
    again = diff_populations(usage, PopulationDiffSettings(n_boot=100, seed=7))
    assert np.array_equal(first.contrasts["ssa"].ci_low, again.contrasts["ssa"].ci_low, equal_nan=True)


def test_benjamini_hochberg_matches_the_step_up_rule():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan, 0.5])
    q = benjamini_hochberg(p)
    # sorted p: .005 .01 .03 .04 .5 (m = 5) -> q = .025 .025 .05 .05 .5
    assert np.allclose(q[[3, 0, 2, 1, 5]], [0.025, 0.025, 0.05, 0.05, 0.5])
    assert np.isnan(q[4])


def test_one_population_or_a_foreign_sae_is_refused(tmp_path, store):
    single = write_planted_store(tmp_path / "single", 4, {"adult": 3}, lambda p, s: 20, {0: lambda p, s, r: 0.5})
    with pytest.raises(ParameterError, match="two or more"):
        diff_populations(accumulate_usage(axis_sae(4), single))
    with pytest.raises(CompatibilityError, match="48 channels"):
        accumulate_usage(axis_sae(8), store)
    with pytest.raises(ParameterError, match="fold change"):
        PopulationDiffSettings(ratio=1.0)
