"""Population parameters: presets, the severity knob, and parameter errors."""

from __future__ import annotations

import dataclasses

import pytest

from MedSegLensLib.errors import ParameterError
from MedSegLensLib.synth import POPULATIONS, PopulationShift, population_shift
from MedSegLensLib.synth.populations import PRESETS


def numeric(shift: PopulationShift) -> dict:
    return {f.name: getattr(shift, f.name) for f in PopulationShift.parameter_fields()}


def flat(params: dict) -> dict[str, float]:
    """Every number of a parameter set under a dotted name (ranges and weights unrolled)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            total = sum(value.values())
            out.update({f"{key}.{k}": v / total for k, v in value.items()})
        elif isinstance(value, tuple):
            out.update({f"{key}.{i}": v for i, v in enumerate(value)})
        else:
            out[key] = value
    return out


def test_every_parameter_is_documented_with_bounds():
    for spec in PopulationShift.parameter_fields():
        assert spec.metadata["doc"] and len(spec.metadata["bounds"]) == 2
    assert {f.name for f in dataclasses.fields(PopulationShift)} - {
        f.name for f in PopulationShift.parameter_fields()
    } == {"name", "has_tumour"}


@pytest.mark.parametrize("population", POPULATIONS)
def test_severity_zero_is_adult_and_one_is_the_preset(population):
    assert flat(numeric(population_shift(population, 0.0))) == pytest.approx(flat(numeric(PRESETS["adult"])))
    assert flat(numeric(population_shift(population, 1.0))) == pytest.approx(flat(numeric(PRESETS[population])))


def test_severity_moves_every_shifted_parameter_monotonically_and_stays_in_bounds():
    adult = numeric(PRESETS["adult"])
    steps = [numeric(population_shift("ssa", s)) for s in (0.0, 0.5, 1.0, 2.0)]
    for spec in PopulationShift.parameter_fields():
        low, high = spec.metadata["bounds"]
        start = adult[spec.name]
        if isinstance(start, dict):
            continue
        for values in steps:
            for v in values[spec.name] if isinstance(start, tuple) else (values[spec.name],):
                assert low <= v <= high, spec.name
    # noise rises with severity; the healthy population never gets a tumour
    noise = [s["noise"][1] for s in steps]
    assert noise == sorted(noise) and noise[0] < noise[-1]
    assert not population_shift("healthy", 2.0).has_tumour


def test_pediatric_tumours_move_to_the_posterior_fossa_with_severity():
    weights = [population_shift("pediatric", s).location_weights for s in (0.0, 0.5, 1.0)]
    fossa = [w.get("cerebellum", 0) + w.get("brainstem", 0) for w in weights]
    assert fossa[0] == 0 and fossa[0] < fossa[1] < fossa[2]
    assert all(sum(w.values()) == pytest.approx(1.0) for w in weights)


@pytest.mark.parametrize(
    "name, severity, text",
    [("martian", 1.0, "unknown population"), ("ssa", -0.1, "severity"), ("ssa", 2.5, "severity")],
)
def test_bad_parameters_are_one_line_errors(name, severity, text):
    with pytest.raises(ParameterError) as info:
        population_shift(name, severity)
    assert text in str(info.value) and "\n" not in str(info.value)


def test_docs_show_the_parameters_the_code_uses():
    from pathlib import Path

    from MedSegLensLib.synth.populations import parameter_table

    docs = (Path(__file__).resolve().parents[1] / "docs" / "synth.md").read_text(encoding="utf-8")
    assert parameter_table() in docs, "docs/synth.md is stale: paste populations.parameter_table() into it"
