"""Triage on a tiny U-Net and SAE: a planted out-of-distribution case ranks first, scores are deterministic,
calibration cases are never ranked, and `medseglens triage` refuses bad input in one line, writing nothing."""

from __future__ import annotations

import copy
import html
import json
import shutil

import numpy as np
import pytest
from models_support import MODALITY_CONTRAST, tiny_case_arrays, trained_tiny_model, write_case, write_cohort
from steering_support import UNET_DECODER, train_layer_sae

from MedSegLensLib.cli.main import main
from MedSegLensLib.data import discover_cohort
from MedSegLensLib.errors import InputError
from MedSegLensLib.models import load_model
from MedSegLensLib.steering.scales import sae_sha256
from MedSegLensLib.triage import Reference, ReferenceSettings, fit_reference, measure_cases, triage, worklist_rows
from MedSegLensLib.triage import run as run_module
from MedSegLensLib.triage.measure import MeasureSettings

NO_TTA = MeasureSettings(tta=False)


def write_scrambled(root, case_id: str, seed: int):
    """A tumour case whose brain intensities are shuffled voxel by voxel: activations unlike any training case."""
    rng = np.random.default_rng(seed)
    images, labels = tiny_case_arrays(rng)
    for name in MODALITY_CONTRAST:
        brain = images[name] > 0
        values = images[name][brain]
        images[name][brain] = rng.permutation(values) * rng.uniform(0.3, 3.0, values.shape)
    return write_case(root, case_id, images, labels, np.diag([2.0, 2.0, 2.0, 1.0]))


@pytest.fixture(scope="module")
def setup(workdir):
    model_dir = trained_tiny_model("unet", workdir)
    model = load_model(model_dir, device="cpu")
    training = sorted(p for p in (model_dir.parent / "cohort-unet").iterdir() if p.is_dir())
    sae_dir = workdir / "triage-sae"
    train_layer_sae(model, training, UNET_DECODER, n_latents=16, k=2, folder=sae_dir)
    from MedSegLensLib.sae import load_sae

    calibration = discover_cohort(write_cohort(workdir / "calib", 4, seed=21, prefix="calib"))
    for number in range(2):
        write_scrambled(workdir / "calib-odd", f"odd-{number}", seed=40 + number)
    odd = discover_cohort(workdir / "calib-odd", population="adult")
    test = discover_cohort(write_cohort(workdir / "test", 3, seed=22, prefix="test"))
    write_scrambled(workdir / "planted", "planted", seed=99)
    planted = discover_cohort(workdir / "planted", population="adult")
    return model, model_dir, load_sae(sae_dir), sae_dir, calibration + odd, test + planted


@pytest.fixture(scope="module")
def calibrated(setup):
    """Calibration records in which the scrambled cases are the failures, and the reference fit on them.

    The ranking machinery is under test here, not the tiny model's Dice, so the failure labels are set."""
    model, _, sae, sae_dir, calibration, _ = setup
    records = measure_cases(model, sae, calibration, NO_TTA)
    for record in records:
        record["failure"] = record["case_id"].startswith("odd")
    reference = fit_reference(records)
    reference.sae_sha256 = sae_sha256(sae_dir)
    return records, reference


def test_planted_out_of_distribution_case_ranks_first_and_scores_repeat(setup, calibrated):
    model, _, sae, _, _, test = setup
    records, reference = calibrated
    first = measure_cases(model, sae, test, NO_TTA)
    rows = worklist_rows(first, reference, {})
    assert rows[0]["case_id"] == "planted"
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    features = {r["case_id"]: reference.sae_features(r) for r in first}
    assert features["planted"]["fvu_brain"] > max(f["fvu_brain"] for c, f in features.items() if c != "planted")

    again = measure_cases(model, sae, test, NO_TTA)
    for a, b in zip(first, again):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    refit = fit_reference(records)
    refit.sae_sha256 = reference.sae_sha256
    assert refit.to_json() == reference.to_json()
    without_seconds = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in worklist_rows(again, refit, {})] == without_seconds


def test_calibration_cases_are_never_ranked(setup):
    model, _, sae, _, calibration, test = setup
    with pytest.raises(InputError, match="used to calibrate"):
        triage(model, sae, test + calibration[:1], calibration=calibration)


def test_flip_tta_volumes_of_a_case(setup):
    model, _, sae, _, _, test = setup
    record = measure_cases(model, sae, test[:1], MeasureSettings(tta=True))[0]
    volumes = record["baselines"]["volumes_ml"]
    assert len(volumes) == 4 and all(v >= 0 for v in volumes)
    assert record["seconds"]["tta"] > 0 and record["failure"] in (True, False)


def _counts_record(case_id: str, tumour_voxels: int, tumour_firings: float, failure: bool = False) -> dict:
    """A record of 10 000 brain voxels whose one tumour latent (0) fires `tumour_firings` times; latent 1 fires
    once everywhere. The tumour latent's calibration rates: once per predicted tumour voxel, 0.1 elsewhere."""
    counts = [tumour_firings, 10_000.0]
    sae = {
        "fvu_tumour": 0.05,
        "fvu_brain": 0.05 + 0.01 * failure,
        "brain_voxels": 10_000,
        "tumour_voxels": tumour_voxels,
    }
    sae |= {"brain_counts": counts, "brain_mass": counts, "tumour_counts": [float(tumour_voxels), tumour_voxels]}
    return {
        "case_id": case_id,
        "population": "adult",
        "pred_volume_ml": tumour_voxels / 125,
        "failure": failure,
        "sae": sae,
    }


def test_tumour_latent_volume_discounts_their_background_firing():
    """Most tumour-latent firings lie outside the predicted tumour; counting them all as tumour made the volume
    disagreement a function of the predicted volume alone, largest where nothing is predicted (healthy cases)."""
    calibration = [
        _counts_record(f"adult-{v}", v, v + 0.1 * (10_000 - v), failure=v == 1600) for v in (200, 400, 800, 1600)
    ]
    reference = fit_reference(calibration)
    disagreement = lambda record: reference.sae_features(record)["volume_disagreement"]  # noqa: E731
    nothing_predicted = _counts_record("healthy", 0, 0.1 * 10_000)
    assert disagreement(nothing_predicted) == pytest.approx(0.0, abs=1e-9)  # was log(1001) counting every firing
    for record in calibration:  # firings as the calibration rates predict: no disagreement
        assert disagreement(record) == pytest.approx(0.0, abs=1e-9)
        assert reference.latent_volume(record) == pytest.approx(record["sae"]["tumour_voxels"])
    missed = _counts_record("missed", 0, 500 + 0.1 * 9_500)  # the latents see 500 tumour voxels the model missed
    assert disagreement(missed) == pytest.approx(np.log(501.0))
    assert reference.tumour_latents == [0]
    assert reference.kappa == pytest.approx(1.0) and reference.background == pytest.approx(0.1)
    # a reference saved before `background` existed still scores as it was fit (every firing counted)
    old = Reference.from_json({k: v for k, v in reference.to_json().items() if k != "background"})
    assert old.latent_volume(nothing_predicted) == pytest.approx(1000.0)


def _feature_records(failures: int, successes: int, failing_brain_fvu: float) -> list[dict]:
    """Calibration records whose failures have brain FVU around `failing_brain_fvu` (successes around 0.05)."""
    rng = np.random.default_rng(5)
    records = []
    for number in range(failures + successes):
        failed = number < failures
        record = _counts_record(f"case-{number:03d}", 400, 400 + 0.1 * 9_600, failure=failed)
        record["sae"]["fvu_brain"] = (failing_brain_fvu if failed else 0.05) + rng.normal(0, 0.005)
        record["sae"]["fvu_tumour"] = 0.05 + rng.normal(0, 0.005)
        records.append(record)
    return records


def test_few_calibration_failures_give_equal_weights_in_the_failure_direction():
    """3 failures for 4 features: a fit follows them even against the feature's meaning (here failures have the
    lowest reconstruction error, as the demo's SSA failures had the lowest weighted rare-latent mass)."""
    calibration = _feature_records(3, 9, failing_brain_fvu=0.03)
    reference = fit_reference(calibration)
    assert reference.weights == "equal (3 failures < 10 per feature)"
    assert reference.coef == [0.25] * 4 and reference.intercept == 0.0
    usual, unusual = _counts_record("usual", 400, 1360.0), _counts_record("unusual", 400, 1360.0)
    unusual["sae"]["fvu_brain"] = 0.2  # reconstructed worse than any calibration case: ranked higher
    assert reference.sae_risk(unusual) > reference.sae_risk(usual)
    assert Reference.from_json(reference.to_json()).weights == reference.weights

    forced = fit_reference(calibration, ReferenceSettings(weights="fitted"))  # the registered benchmark's method
    assert forced.weights == "fitted" and forced.coef[1] < 0  # the fit learns "low error fails" from 3 cases
    assert forced.sae_risk(unusual) < forced.sae_risk(usual)
    with pytest.raises(InputError, match="weights 'equal'"):
        ReferenceSettings(weights="equal")


def test_ten_calibration_failures_per_feature_are_fit():
    enough = _feature_records(40, 40, failing_brain_fvu=0.08)
    reference = fit_reference(enough)
    assert reference.weights == "fitted"
    assert reference.coef[1] > 0.5 and reference.coef[0] != reference.coef[1]  # fvu_tumour does not separate them
    assert fit_reference(enough[1:]).weights == "equal (39 failures < 10 per feature)"


def _cli(capsys, *args: str) -> tuple[int, str]:
    """(exit code, stderr) of `medseglens triage ARGS`, run in this process."""
    capsys.readouterr()
    code = main(["triage", *args])
    return code, capsys.readouterr().err


def test_cli_writes_a_sorted_worklist(setup, calibrated, workdir, capsys):
    _, model_dir, _, sae_dir, _, _ = setup
    reference_file = workdir / "reference.json"
    reference_file.write_text(json.dumps(calibrated[1].to_json()))
    out = workdir / "worklist"
    out.mkdir()  # an empty folder may be used
    code, err = _cli(
        capsys, "--model", str(model_dir), "--sae", str(sae_dir), "--data", str(workdir / "test"),
        str(workdir / "planted"), "--reference", str(reference_file), "--out", str(out), "--no-tta",
    )  # fmt: skip
    assert code == 0, err
    document = json.loads((out / "worklist.json").read_text())
    risks = [c["risk"] for c in document["cases"]]
    assert risks == sorted(risks, reverse=True)
    assert [c["case_id"] for c in document["cases"]][0] == "planted"
    assert {c["case_id"] for c in document["cases"]} == {"test-000", "test-001", "test-002", "planted"}
    assert all(
        len(c["top_latents"]) <= 5 and set(c["baselines"]) >= {"entropy", "tta_volume_cv"} for c in document["cases"]
    )
    assert (out / "worklist.csv").read_text().startswith("rank,case_id,population,risk")
    page = (out / "index.html").read_text()
    assert "<script" not in page and "http" not in page and "test-000" in page
    # 2 calibration failures: equal weights, said in the worklist, its page and the reference it writes
    assert document["weights"] == "equal (2 failures < 10 per feature)" and html.escape(document["weights"]) in page
    assert json.loads((out / "reference.json").read_text())["weights"] == document["weights"]
    code, err = _cli(
        capsys, "--model", str(model_dir), "--sae", str(sae_dir), "--data", str(workdir / "calib"),
        "--reference", str(reference_file), "--out", str(workdir / "calibration-ranked"),
    )  # fmt: skip
    assert code != 0 and "used to calibrate" in err and not (workdir / "calibration-ranked").exists()


def test_cli_weights_rule_reaches_the_fit_and_bad_rules_are_refused(setup, calibrated, workdir, capsys, monkeypatch):
    """The calibration cases' records are the measured ones with the scrambled cases as failures (as in
    `calibrated`): 2 failures, so `auto` adds equal weights and `--weights fitted` fits anyway."""
    _, model_dir, _, sae_dir, _, _ = setup
    labelled = {record["case_id"]: record for record in calibrated[0]}
    measure = run_module.measure_case
    monkeypatch.setattr(
        run_module,
        "measure_case",
        lambda model, sae, files, settings: (
            copy.deepcopy(labelled.get(files.case_id)) or measure(model, sae, files, settings)
        ),
    )
    common = ["--model", str(model_dir), "--sae", str(sae_dir), "--data", str(workdir / "planted"), "--no-tta"]
    calibration = ["--calibration", str(workdir / "calib"), str(workdir / "calib-odd")]
    for rule, expected in ((None, "equal (2 failures < 10 per feature)"), ("fitted", "fitted")):
        out = workdir / f"weights-{rule}"
        code, err = _cli(capsys, *common, *calibration, "--out", str(out), *(["--weights", rule] if rule else []))
        assert code == 0, err
        assert json.loads((out / "reference.json").read_text())["weights"] == expected
    reference_file = workdir / "weights-fitted" / "reference.json"
    for bad, message in (
        ([*calibration, "--weights", "equal"], "weights 'equal': use one of auto, fitted"),
        (["--reference", str(reference_file), "--weights", "fitted"], "keeps the weights it has"),
    ):
        code, err = _cli(capsys, *common, *bad, "--out", str(workdir / "weights-bad"))
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1 and message in lines[0], err
        assert not (workdir / "weights-bad").exists()


@pytest.mark.parametrize("problem", ["missing modality", "another model", "non-empty out"])
def test_cli_bad_input_is_one_line_and_writes_nothing(setup, workdir, problem, capsys):
    _, model_dir, _, sae_dir, _, _ = setup
    data = workdir / "test"
    out = workdir / f"bad-{problem.replace(' ', '-')}"
    sae = str(sae_dir)
    if problem == "missing modality":
        data = workdir / "no-flair"
        write_cohort(data, 1, seed=24, prefix="noflair")
        manifest = data / "manifest.csv"
        rows = [line.split(",") for line in manifest.read_text().splitlines()]
        keep = [i for i, name in enumerate(rows[0]) if name != "t2f"]
        manifest.write_text("\n".join(",".join(r[i] for i in keep) for r in rows) + "\n")
    elif problem == "another model":
        sae = str(workdir / "other-model-sae")
        shutil.copytree(sae_dir, sae, dirs_exist_ok=True)
        sidecar = json.loads((sae_dir / "sae.json").read_text())
        (workdir / "other-model-sae" / "sae.json").write_text(json.dumps({**sidecar, "model_fingerprint": "f" * 64}))
    else:
        out.mkdir()
        (out / "notes.txt").write_text("user data")
    before = sorted(p.name for p in out.parent.iterdir())
    code, err = _cli(
        capsys, "--model", str(model_dir), "--sae", sae, "--data", str(data), "--calibration", str(workdir / "calib"),
        "--out", str(out),
    )  # fmt: skip
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medseglens triage: error:"), err
    assert {"missing modality": "t2f", "another model": "another model", "non-empty out": "not an empty"}[
        problem
    ] in lines[0]
    assert sorted(p.name for p in out.parent.iterdir()) == before
    if problem == "non-empty out":
        assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_cli_explain_draws_the_three_maps_of_one_case(setup, workdir, capsys):
    _, model_dir, _, sae_dir, _, _ = setup
    out = workdir / "why"
    args = ["--model", str(model_dir), "--sae", str(sae_dir), "--data", str(workdir / "planted"), "--out", str(out)]
    code, err = _cli(capsys, *args, "--explain", "nowhere")
    assert code != 0 and "not in" in err and len(err.strip().splitlines()) == 1 and not out.exists()
    code, err = _cli(capsys, *args, "--explain", "planted", "--latent", "3")
    assert code == 0, err
    assert [p.name for p in out.iterdir()] == ["why.png"]
    assert (out / "why.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
