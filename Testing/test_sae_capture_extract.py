"""Extraction into an activation store: stratified rows with their metadata, resumable per case."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_support import one_thread, write_cohort  # noqa: F401 (fixtures)

from MedSegLensLib.data import discover_cohort
from MedSegLensLib.errors import CompatibilityError
from MedSegLensLib.models import SegmentationModel, build_network, tiny_config
from MedSegLensLib.sae import STRATA
from MedSegLensLib.sae.capture import layer_features
from MedSegLensLib.sae.extract import check_store_for, extract_activations, extract_layers
from MedSegLensLib.sae.strata import STRATUM_CODE

LAYER = "model.0"  # stride 2, 4 channels
QUOTAS = {"background": 20, "brain": 40, "NCR": 30, "ED": 30, "ET": 30}


@pytest.fixture(scope="module")
def model() -> SegmentationModel:
    torch.manual_seed(0)
    config = tiny_config("unet")
    return SegmentationModel(build_network(config), config, "a" * 64, device="cpu")


@pytest.fixture(scope="module")
def cohort(workdir):
    return discover_cohort(write_cohort(workdir / "cohort", 3, seed=7))


class Interrupt(Exception):
    pass


def test_rows_carry_their_case_voxel_label_and_activation(model, cohort, workdir):
    store = extract_activations(model, LAYER, cohort, workdir / "store", QUOTAS, seed=3)
    assert [c["case_id"] for c in store.cases] == [c.case_id for c in cohort]
    assert {c["population"] for c in store.cases} == {"adult"}
    assert store.info["layer"] == LAYER and store.info["model_fingerprint"] == model.fingerprint
    columns = store.read_shard(0)  # one shard per committed case
    case = cohort[0].load()
    fmap = layer_features(model, case, LAYER)
    coords = columns["coords"].numpy().astype(int)
    np.testing.assert_array_equal(columns["label"].numpy(), case.label[tuple(coords.T)])
    # each row is the layer map at the layer voxel whose centre lies on that case voxel
    voxels = fmap.case_voxels().reshape(-1, 3)
    lookup = {tuple(v): i for i, v in enumerate(voxels)}
    rows = fmap.rows()
    for row, voxel in zip(columns["activations"][:50], coords[:50]):
        torch.testing.assert_close(row.float(), rows[lookup[tuple(voxel)]].half().float())
    # quotas per stratum, tumour heavily over-represented against uniform sampling
    strata = columns["stratum"].numpy()
    for name, quota in QUOTAS.items():
        assert (strata == STRATUM_CODE[name]).sum() <= quota
    tumour_rows = np.isin(strata, [STRATUM_CODE[s] for s in ("NCR", "ED", "ET")]).mean()
    tumour_voxels = (fmap.values_at_layer(case.label) > 0).mean()
    assert tumour_rows > 3 * tumour_voxels
    assert set(np.unique(strata)) <= {STRATA.index(s) for s in QUOTAS}


def test_rerun_skips_finished_cases_and_gives_the_same_store(model, cohort, workdir):
    reference = extract_activations(model, LAYER, cohort, workdir / "reference", QUOTAS, seed=5)
    calls = []

    def stop_after_two(done, total, case_id, skipped):
        calls.append((case_id, skipped))
        if done == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        extract_activations(model, LAYER, cohort, workdir / "resumed", QUOTAS, seed=5, progress=stop_after_two)
    calls.clear()
    resumed = extract_activations(
        model,
        LAYER,
        cohort,
        workdir / "resumed",
        QUOTAS,
        seed=5,
        progress=lambda *a: calls.append((a[2], a[3])),
        resume=True,
    )
    assert calls == [(cohort[0].case_id, True), (cohort[1].case_id, True), (cohort[2].case_id, False)]
    assert resumed.cases == reference.cases
    for shard in range(len(reference.shards)):
        for name, column in reference.read_shard(shard).items():
            assert torch.equal(column, resumed.read_shard(shard)[name]), name


def test_several_layers_in_one_pass_and_store_checks(model, cohort, workdir):
    layers = {"model.0": workdir / "multi-a", "model.1.submodule.0": workdir / "multi-b"}
    stores = extract_layers(model, layers, cohort[:2], QUOTAS, seed=1)
    assert stores["model.0"].d_in == 4 and stores["model.1.submodule.0"].d_in == 8
    single = extract_activations(model, "model.1.submodule.0", cohort[:2], workdir / "single-b", QUOTAS, seed=1)
    assert torch.equal(single.read_shard(1)["activations"], stores["model.1.submodule.0"].read_shard(1)["activations"])
    check_store_for(single, model, "model.1.submodule.0")
    with pytest.raises(CompatibilityError, match="layer"):
        check_store_for(single, model, "model.0")
    other = SegmentationModel(model.network, model.config, "b" * 64, device="cpu")
    with pytest.raises(CompatibilityError, match="capture a new store"):
        check_store_for(single, other, "model.1.submodule.0")
