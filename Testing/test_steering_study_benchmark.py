"""The pre-registered steering benchmark (bench/steering_protocol.json): refusals, selection rules, --small run."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from MedSegLensLib.errors import InputError, OutputError, ParameterError
from MedSegLensLib.preregistration import bind_results, check_committed
from MedSegLensLib.steering.study.bench_candidates import BASELINES, METHODS
from MedSegLensLib.steering.study.bench_run import (
    Benchmark,
    check_disjoint_ids,
    run_benchmark,
    score,
)
from MedSegLensLib.steering.study.bench_select import LABEL_FREE, choose, fit_population
from MedSegLensLib.steering.study.protocol import Protocol
from MedSegLensLib.steering.study.stats import holm, paired_bootstrap, sign_test

PROTOCOL = Path(__file__).resolve().parents[1] / "bench" / "steering_protocol.json"


def _git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder, check=True, capture_output=True
    )


def test_an_uncommitted_or_untracked_protocol_is_refused(tmp_path):
    copy = tmp_path / "steering_protocol.json"
    shutil.copyfile(PROTOCOL, copy)
    _git(tmp_path, "init", "-q")
    with pytest.raises(ParameterError, match="uncommitted"):
        check_committed(Protocol.load(copy))  # untracked
    _git(tmp_path, "add", copy.name)
    _git(tmp_path, "commit", "-q", "-m", "protocol")
    commit = check_committed(Protocol.load(copy))
    assert len(commit) == 40
    copy.write_text(copy.read_text().replace('"bootstrap": 10000', '"bootstrap": 9999'))
    with pytest.raises(ParameterError, match="uncommitted"):
        check_committed(Protocol.load(copy))


def test_results_cannot_be_reused_for_a_changed_protocol(tmp_path):
    protocol = Protocol.load(PROTOCOL)
    bind_results(protocol, tmp_path / "out", "abc")
    assert bind_results(protocol, tmp_path / "out", "abc")["sha256"] == protocol.sha256  # same protocol: fine
    changed = tmp_path / "changed.json"
    changed.write_text(PROTOCOL.read_text().replace('"bootstrap": 10000', '"bootstrap": 9999'))
    with pytest.raises(OutputError, match="cannot change after results"):
        bind_results(Protocol.load(changed), tmp_path / "out", "abc")


def test_protocol_grid_is_equal_for_every_method_and_seeds_are_fresh():
    protocol = Protocol.load(PROTOCOL)
    assert protocol.budget == 24 and protocol.signs == (1, -1)
    assert protocol.data["primary"]["method"] == "sae" and protocol.data["primary"]["selection"] == "calibrated"
    seeds = [c.seed for c in protocol.cohorts()] + [protocol.random_seed, protocol.bootstrap[1]]
    assert len(set(seeds)) == len(seeds)
    # no code or data of the repository uses these seeds (chosen fresh for this benchmark; docs may cite them)
    root = PROTOCOL.parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    for seed in seeds:
        found = subprocess.run(
            ["git", "grep", "-l", "-w", str(seed)], cwd=root, capture_output=True, check=False, text=True
        ).stdout
        assert set(found.split()) <= {"bench/steering_protocol.json", "docs/steering.md", "README.md"}, (seed, found)


def test_calibration_and_test_ids_must_be_disjoint(tmp_path):
    check_disjoint_ids({"calibration": ["a", "b"], "test": ["c"], "harm": ["d"]})
    with pytest.raises(InputError, match="calibration and test"):
        check_disjoint_ids({"calibration": ["a", "b"], "test": ["b", "c"]})
    # two cohorts with one seed would give the same case ids: the protocol itself is refused
    data = json.loads(PROTOCOL.read_text())
    data["cohorts"][4]["seed"] = data["cohorts"][1]["seed"]
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps(data))
    with pytest.raises(InputError, match="share a seed"):
        Protocol.load(clash)


def test_paired_statistics_match_hand_computed_values():
    assert sign_test([1, 1, 1, 0, -1]) == (3, 1, pytest.approx(0.625))
    assert sign_test([0.0, 0.0]) == (0, 0, 1.0)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    mean, low, high = paired_bootstrap([1.0] * 10, 200, 0)
    assert (mean, low, high) == (1.0, 1.0, 1.0)
    mean, low, high = paired_bootstrap([-1.0, 1.0] * 20, 2000, 0)
    assert mean == 0 and -0.4 < low < 0 < high < 0.4


def _out(dice: float, wt: float, tc: float, et: float) -> dict:
    return {
        "dice": {"WT": dice, "TC": dice, "ET": dice, "ED": dice},
        "volume_ml": {"WT": wt, "TC": tc, "ET": et, "ED": wt - tc},
        "entropy": 0.0,
    }


def _record(before, candidates, reference=(20.0, 8.0, 4.0), fvu=0.1):
    return {
        "case_id": "x",
        "population": "p",
        "before": _out(*before),
        "fvu": fvu,
        "reference_ml": {"WT": reference[0], "TC": reference[1], "ET": reference[2], "ED": 0.0},
        "candidates": [
            {"method": "m", "key": key, "magnitude": 1.0, "outcome": _out(*v)} for key, v in candidates.items()
        ],
    }


class _Rules:
    regions = ("WT", "TC", "ET")


def test_selection_rules_pick_what_the_protocol_says():
    calib = [
        _record((0.3, 10, 4, 2), {"a": (0.6, 20, 8, 4), "b": (0.2, 40, 8, 4)}),
        _record((0.7, 10, 4, 2), {"a": (0.8, 21, 8, 4), "b": (0.1, 50, 5, 2)}, fvu=0.3),
    ]
    fitted = fit_population(calib, _Rules)
    assert fitted["calibrated"]["m"] == "a"  # mean 0.7 beats none (0.5) and b (0.15)
    assert fitted["tto"]["tc_fraction"] == pytest.approx(0.4) and fitted["tto"]["et_fraction"] == pytest.approx(0.2)
    test = _record((0.4, 10, 4, 2), {"a": (0.45, 20, 8, 4), "b": (0.9, 12, 2, 1)}, fvu=0.2)
    assert choose(test, "m", "oracle", fitted)[0] == "b"
    assert choose(test, "m", "calibrated", fitted)[0] == "a"
    assert choose(test, "m", "tto", fitted)[0] == "a"  # grows WT x2 as calibration did, TC/WT 0.4, ET/WT 0.2
    assert fitted["fvu_threshold"] < 0.3
    gated = dict(test, fvu=0.5)
    assert choose(gated, "m", "gated-calibrated", fitted)[0] == "none"
    assert choose(test, "m", "gated-calibrated", fitted)[0] == "a"


def _scramble(record: dict, seed: int) -> dict:
    """The same case with another reference: every Dice and reference volume changes, predictions do not."""
    rng = random.Random(seed)
    copy = json.loads(json.dumps(record))
    for out in [copy["before"]] + [c["outcome"] for c in copy.get("candidates", [])]:
        out["dice"] = {k: rng.random() for k in out["dice"]}
    if copy.get("reference_ml"):
        copy["reference_ml"] = {k: rng.uniform(1, 100) for k in copy["reference_ml"]}
    return copy


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The --small benchmark once (tiny U-Net, 4 mm cohorts): about a minute on the 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bench")
    protocol = Protocol.load(PROTOCOL, small=True)
    try:
        table = run_benchmark(protocol, out, commit="test", log=lambda _: None)
        yield protocol, out, table
    finally:
        torch.set_num_threads(threads)


def test_small_benchmark_writes_complete_tables_with_equal_budgets(small_run):
    protocol, out, table = small_run
    text = table.read_text()
    assert text.startswith("# Steering benchmark: complete")
    assert protocol.sha256 in text and "**PRIMARY** sae − logit-bias" in text
    records = [json.loads(p.read_text()) for p in (out / "records" / "test").glob("*.json")]
    assert len(records) == sum(c.cases for c in protocol.cohorts("test"))
    for record in records:
        counts = {m: sum(c["method"] == m for c in record["candidates"]) for m in METHODS}
        assert all(counts[m] == protocol.budget for m in METHODS if m != "sae-multi"), counts
        assert 0 < counts["sae-multi"] <= protocol.budget
    calibration = {p.stem for p in (out / "records" / "calibration").glob("*.json")}
    assert calibration and not calibration & {r["case_id"] for r in records}
    summary = json.loads((out / "results" / "summary.json").read_text())
    assert {r["baseline"] for r in summary["paired"]} == set(BASELINES)
    assert sum(r["primary"] for r in summary["paired"]) == 1
    assert {r["cohort"] for r in summary["harm"]} <= {"adult", "healthy"}
    assert [json.loads(line)["event"] for line in (out / "runs.jsonl").read_text().splitlines()] == ["start", "end"]


def test_small_benchmark_resumes_without_recomputing(small_run):
    protocol, out, table = small_run
    before = table.read_text()
    run_benchmark(protocol, out, commit="test", log=lambda _: None)
    assert json.loads((out / "runs.jsonl").read_text().splitlines()[-1])["cases_done_now"] == 0
    assert table.read_text() == before


def test_label_free_choices_never_depend_on_the_test_reference(small_run):
    protocol, out, _ = small_run
    calibration = [json.loads(p.read_text()) for p in (out / "records" / "calibration").glob("*.json")]
    tests = [json.loads(p.read_text()) for p in sorted((out / "records" / "test").glob("*.json"))]
    oracle_changed = 0
    for record in tests:
        fitted = fit_population([r for r in calibration if r["population"] == record["population"]], protocol)
        for seed in range(3):
            scrambled = _scramble(record, seed)
            for method in METHODS:
                for selection in LABEL_FREE:
                    assert (
                        choose(record, method, selection, fitted)[0] == choose(scrambled, method, selection, fitted)[0]
                    )
                oracle_changed += (
                    choose(record, method, "oracle", fitted)[0] != choose(scrambled, method, "oracle", fitted)[0]
                )
    assert oracle_changed > 0  # the scramble did reach what the oracle reads


def test_the_oracle_choice_reproduces_when_rerun_from_scratch(small_run):
    """The recorded outcome of each oracle choice is what a fresh session gives for that candidate."""
    protocol, out, _ = small_run
    bench = Benchmark(protocol, out, "test", log=lambda _: None)
    calibration = [bench.load("calibration", c) for c in bench.split_cases("calibration")]
    files = bench.split_cases("test")[0]
    record = bench.load("test", files)
    fitted = fit_population([r for r in calibration if r["population"] == record["population"]], protocol)
    case = files.load()
    session = bench.session(case)
    from MedSegLensLib.steering.region import region_mask

    mask = region_mask(bench.region, session.prepared.grid, session.predicted_tumour())
    for method in ("sae", "mean-diff", "logit-bias"):
        key, chosen = choose(record, method, "oracle", fitted)
        best = max(
            [score(record["before"], protocol)]
            + [score(c["outcome"], protocol) for c in record["candidates"] if c["method"] == method]
        )
        assert score(chosen, protocol) == pytest.approx(best)
        if key == "none":
            continue
        candidate = next(c for c in bench.candidates(record["population"]) if c.key == key)
        again = bench.run_candidate(session, mask, candidate)
        assert again["dice"] == pytest.approx(chosen["dice"], abs=1e-6)
        assert again["volume_ml"] == pytest.approx(chosen["volume_ml"], abs=1e-6)


def test_a_scrambled_reference_changes_the_dice_but_no_label_free_choice_end_to_end(small_run):
    """Evaluate a test case again with its reference labels shuffled: predictions and label-free choices stay."""
    import dataclasses

    import numpy as np

    protocol, out, _ = small_run
    bench = Benchmark(protocol, out, "test", log=lambda _: None)
    calibration = [bench.load("calibration", c) for c in bench.split_cases("calibration")]
    files = bench.split_cases("test")[0]
    record = bench.load("test", files)
    fitted = fit_population([r for r in calibration if r["population"] == record["population"]], protocol)
    case = files.load()
    label = case.label.copy()
    np.random.default_rng(0).shuffle(label.reshape(-1))

    class Scrambled:
        population = files.population
        case_id = files.case_id

        @staticmethod
        def load():
            return dataclasses.replace(case, label=label)

    with torch.no_grad():
        again = bench.evaluate_case("test", Scrambled, None)
    assert again["reference_ml"] == pytest.approx(record["reference_ml"])  # a shuffle keeps the volumes
    assert again["before"]["dice"] != pytest.approx(record["before"]["dice"])  # ... but not the overlap
    for method in METHODS:
        for selection in LABEL_FREE:
            assert choose(again, method, selection, fitted)[0] == choose(record, method, selection, fitted)[0]
