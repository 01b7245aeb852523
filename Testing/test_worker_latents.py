"""The worker's latent and steering jobs through a real worker subprocess, checked against in-process results."""

from __future__ import annotations

import json

import numpy as np
import pytest
from slicer_support import EDEMA, assets_fixture

from MedSegLensLib.data import read_case, read_volume
from MedSegLensLib.errors import CompatibilityError, InputError, ParameterError
from MedSegLensLib.models import load_model
from MedSegLensLib.sae import encode_case, load_sae

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


assets = assets_fixture("latents")


@pytest.fixture(scope="module")
def in_process(assets):
    """The model, SAE, case and codes computed here, to compare the worker's files with."""
    model = load_model(assets.model, device="cpu")
    sae = load_sae(assets.sae)
    case = read_case(assets.flipped)
    return model, sae, case, encode_case(model, sae, case)


def params(assets, case=None):
    return {"model": str(assets.model), "sae": str(assets.sae), "case": str(case or assets.flipped)}


def cache_counts(worker):
    info = worker.run("ping")
    return info["cache_hits"], info["cache_misses"]


def test_encode_gives_the_segmentation_and_the_active_latents(worker, assets, in_process):
    model, sae, case, codes = in_process
    data = worker.run("encode", params(assets))
    segmentation = read_volume(data["segmentation"], kind="label")
    source = read_volume(assets.flipped / "planted-t1n.nii.gz")
    np.testing.assert_allclose(segmentation.grid.affine, source.grid.affine)
    np.testing.assert_array_equal(segmentation.array, case.to_source(model.predict(case).labels))
    rows = data["latents"]
    firing = codes.firing_counts()
    assert {row["latent"] for row in rows} == set(np.flatnonzero(firing).tolist())
    assert [row["max"] for row in rows] == sorted((row["max"] for row in rows), reverse=True)
    values, latents = codes.value.numpy(), codes.latent.numpy()
    for row in rows:
        mine = values[latents == row["latent"]]
        assert row["active_voxels"] == firing[row["latent"]]
        assert row["max"] == pytest.approx(float(mine.max()), rel=1e-6)
        assert row["mean_active"] == pytest.approx(float(mine.mean()), rel=1e-5)
        assert 0 <= row["active_fraction"] <= 1 and row["category"] == ""  # 0: fires only outside the brain
    assert any(row["active_fraction"] > 0 for row in rows)
    assert data["sae"]["n_latents"] == sae.n_latents and data["sae"]["layer"] == sae.info.layer
    assert data["model"]["fingerprint"] == model.fingerprint
    assert data["steering"]["strength_ranges"]["additive"] == [-10.0, 10.0]


def test_latent_maps_come_from_the_cache_on_the_input_grid(worker, assets, in_process):
    model, sae, case, codes = in_process
    worker.run("encode", params(assets))
    hits_before, misses_before = cache_counts(worker)
    latent = int(np.argmax(codes.firing_counts()))
    data = worker.run("latent_map", {**params(assets), "latent": latent})
    hits_after, misses_after = cache_counts(worker)
    assert misses_after == misses_before, "stepping to a latent loads and runs nothing again"
    assert hits_after["analysis"] == hits_before["analysis"] + 1
    volume = read_volume(data["map"])
    expected = case.to_source(codes.latent_map(latent))
    np.testing.assert_allclose(volume.grid.affine, case.source_grid.affine)
    np.testing.assert_allclose(volume.array, expected, rtol=1e-5, atol=1e-6)
    peak_voxel = np.unravel_index(int(np.argmax(volume.array)), volume.array.shape)
    np.testing.assert_allclose(volume.grid.affine @ [*peak_voxel, 1], [*data["peak_ras"], 1], atol=1e-4)
    assert data["peak"] == pytest.approx(float(volume.array.max()), rel=1e-6)
    with pytest.raises(ParameterError, match="latent\\(s\\) \\[99\\] out of range"):
        worker.run("latent_map", {**params(assets), "latent": 99})


def test_encode_merges_interpretation_and_population_specificity(worker, assets, tmp_path, in_process):
    _, sae, _, codes = in_process
    latent = int(np.argmax(codes.firing_counts()))
    labels = tmp_path / "latents.json"
    labels.write_text(
        json.dumps(
            {
                "format": "medseglens-latents",
                "sae": {"n_latents": sae.n_latents, "layer": sae.info.layer},
                "latents": [{"index": latent, "category": "edema", "confidence": 0.7, "description": "fires on edema"}],
            }
        )
    )
    populations = tmp_path / "populations.json"
    categories = ["shared"] * sae.n_latents
    categories[latent] = "specific"
    populations.write_text(
        json.dumps(
            {
                "category": categories,
                "specific": [{"latent": latent, "enriched_in": ["ssa"], "depleted_in": [], "max_abs_log_ratio": 1.5}],
            }
        )
    )
    data = worker.run("encode", {**params(assets), "labels": str(labels), "populations": str(populations)})
    rows = {row["latent"]: row for row in data["latents"]}
    assert rows[latent]["category"] == "edema" and rows[latent]["confidence"] == 0.7
    assert rows[latent]["description"] == "fires on edema"
    assert rows[latent]["specificity"] == "specific: enriched in ssa" and rows[latent]["specificity_score"] == 1.5
    assert all(row["specificity"] == "shared" for j, row in rows.items() if j != latent)
    wrong = tmp_path / "other.json"
    wrong.write_text(json.dumps({"sae": {"n_latents": 7, "layer": "x"}, "latents": []}))
    with pytest.raises(CompatibilityError, match="other.json: describes an SAE with 7 latents"):
        worker.run("encode", {**params(assets), "labels": str(wrong)})


def steer(worker, assets, strength, region=None, reference=True, case=None):
    spec = {
        "latents": [assets.edema_latent],
        "strengths": [strength],
        "mode": "additive",
        "region": region or {"kind": "tumour-margin", "margin_mm": 4.0},
    }
    request = {**params(assets, case), "spec": spec}
    if reference:
        request["reference"] = str((case or assets.case) / "planted-seg.nii.gz")
    return worker.run("steer", request)


def dice(a, b):
    return 2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def test_steering_the_edema_latent_grows_edema_and_reports_dice(worker, assets):
    truth = read_volume(assets.case / "planted-seg.nii.gz", kind="label").array
    edema, results = [], []
    for strength in (0.0, 1.0, 2.0, 3.0):
        data = steer(worker, assets, strength, case=assets.case)
        labels = read_volume(data["segmentation"], kind="label").array
        edema.append(int(np.count_nonzero(labels == EDEMA)))
        assert data["label_voxels"].get("2", 0) == edema[-1]
        assert data["dice"]["ED"] == pytest.approx(dice(labels == EDEMA, truth == EDEMA), abs=1e-6)
        results.append(data)
    assert edema[0] < np.count_nonzero(truth == EDEMA), "the planted case is under-called before steering"
    assert all(b > a for a, b in zip(edema, edema[1:])), edema
    assert results[0]["changed_voxels"] == 0 and results[0]["dice"] == results[0]["dice_unsteered"]
    assert results[-1]["dice"]["ED"] > results[0]["dice"]["ED"] + 0.01  # +0.02 with the quarter-scale encoder init
    provenance = json.loads(results[-1]["provenance"])
    assert provenance["mode"] == "additive" and provenance["latents"] == [assets.edema_latent]
    assert provenance["strengths"] == [3.0] and provenance["region"] == {"kind": "tumour-margin", "margin_mm": 4.0}
    assert provenance["sae_sha256"] == json.loads((assets.sae / "sae.json").read_text())["weights_sha256"]


def test_a_strength_change_reuses_the_steering_session(worker, assets):
    steer(worker, assets, 1.0, reference=False)
    hits_before, misses_before = cache_counts(worker)
    steer(worker, assets, 2.5, reference=False)
    hits_after, misses_after = cache_counts(worker)
    assert misses_after == misses_before
    assert hits_after["steering"] == hits_before["steering"] + 1


def test_a_mask_region_confines_steering(worker, assets, tmp_path):
    case = read_case(assets.flipped)
    mask = np.zeros(case.shape, np.uint8)
    mask[: case.shape[0] // 2] = 1  # one half of the head
    path = case.write_like_input(mask, tmp_path / "mask.nii.gz", dtype=np.uint8)
    unsteered = read_volume(steer(worker, assets, 0.0, reference=False)["segmentation"], kind="label").array
    data = steer(worker, assets, 3.0, region={"kind": "mask", "path": str(path)}, reference=False)
    steered = read_volume(data["segmentation"], kind="label").array
    changed = steered != unsteered
    everywhere = (
        read_volume(
            steer(worker, assets, 3.0, region={"kind": "none"}, reference=False)["segmentation"], kind="label"
        ).array
        != unsteered
    )
    inside = case.to_source(mask.astype(bool))
    # Instance normalisation after the layer spreads some change beyond the mask, but most stays inside.
    assert np.count_nonzero(changed & inside) > 2 * np.count_nonzero(changed & ~inside)
    assert np.count_nonzero(changed & ~inside) < np.count_nonzero(everywhere & ~inside)
    region = json.loads(data["provenance"])["region"]
    assert region["kind"] == "mask" and len(region["sha256"]) == 64


def test_bad_steering_requests_are_refused_with_one_line(worker, assets, tmp_path):
    with pytest.raises(ParameterError, match="outside \\[-10, 10\\] for additive"):
        steer(worker, assets, 11.0, reference=False)
    with pytest.raises(InputError, match="nowhere.nii.gz: the region mask file does not exist"):
        steer(worker, assets, 1.0, region={"kind": "mask", "path": str(tmp_path / "nowhere.nii.gz")}, reference=False)
    other = tmp_path / "other-model"
    from worker_cases import save_tiny_model

    save_tiny_model(other)
    with pytest.raises(CompatibilityError, match="trained on another model"):
        worker.run("encode", {**params(assets), "model": str(other)})
