"""Encoding a whole case with an SAE: sparse codes per layer voxel, latent maps, refusal of mismatches."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from models_support import one_thread  # noqa: F401 (fixture)
from worker_cases import write_case

from MedSegLensLib.data import read_case
from MedSegLensLib.errors import CompatibilityError, ParameterError
from MedSegLensLib.models import SegmentationModel, build_network, tiny_config
from MedSegLensLib.sae import SAEInfo, SAETrainingSettings, TensorRows, evaluate_fidelity, load_sae, save_sae, train_sae
from MedSegLensLib.sae.capture import layer_features
from MedSegLensLib.sae.encode import encode_case, encode_features

LAYER = "model.0"  # tiny U-Net encoder block: 4 channels at stride 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny U-Net, a case, its layer map, and a TopK and a BatchTopK SAE trained on that layer (saved and "
    "reloaded)."""
    torch.manual_seed(0)
    config = tiny_config("unet")
    model = SegmentationModel(build_network(config), config, "f" * 64, device="cpu")
    root = tmp_path_factory.mktemp("encode")
    case = read_case(write_case(root, np.random.default_rng(3), with_labels=True))
    fmap = layer_features(model, case, LAYER)
    saes = {}
    for kind in ("topk", "batchtopk"):
        trained, summary = train_sae(
            TensorRows(fmap.rows()),
            SAETrainingSettings(n_latents=32, k=2, kind=kind, total_rows=96 * 512, batch_size=512, seed=1),
            show_progress=False,
        )
        saes[kind] = load_sae(save_sae(trained, root / kind, SAEInfo(model.fingerprint, LAYER, training=summary)))
    return model, case, fmap, saes


@pytest.mark.parametrize("kind", ["topk", "batchtopk"])
def test_codes_decode_back_to_the_layer_map_within_the_saes_error(setup, kind):
    model, case, fmap, saes = setup
    sae = saes[kind]
    codes = encode_case(model, sae, case)  # the layer comes from the SAE's record
    assert codes.shape == fmap.shape and codes.grid.same_as(fmap.grid) and codes.case_grid.same_as(case.grid)
    assert codes.layer == LAYER and codes.n_latents == 32
    per_voxel = codes.l0_map()
    if kind == "topk":
        assert per_voxel.max() <= 2
    else:
        assert float(codes.value.min()) > float(sae.threshold)
    assert torch.all(codes.value > 0)
    decoded = codes.decode(sae)
    assert decoded.shape == fmap.features.shape
    # voxel for voxel, the map decodes to what the SAE makes of that voxel's row
    rows_back = decoded.reshape(decoded.shape[0], -1).T
    torch.testing.assert_close(rows_back, sae(fmap.rows()), rtol=1e-5, atol=1e-6)
    # and its error is the SAE's error on these rows: a faithful SAE, a faithful map
    features = fmap.features.double()
    centred = features - features.mean(dim=(1, 2, 3), keepdim=True)
    fvu_map = float((decoded.double() - features).pow(2).sum() / centred.pow(2).sum())
    report = evaluate_fidelity(sae, [fmap.rows()])
    assert fvu_map == pytest.approx(report.fvu, rel=1e-4, abs=1e-6)
    assert fvu_map < 0.2


def test_latent_maps_on_the_layer_and_on_the_case_grid(setup):
    model, case, fmap, saes = setup
    codes = encode_features(saes["topk"], fmap)
    counts = codes.firing_counts()
    latent = int(np.argmax(counts))
    layer_map = codes.latent_map(latent, on="layer")
    np.testing.assert_array_equal(layer_map, codes.dense([latent])[0])
    assert np.count_nonzero(layer_map) == counts[latent] > 0
    image_map = codes.latent_map(latent)
    assert image_map.shape == case.grid.shape and image_map.dtype == np.float32
    # the model works on the case's own grid and the layer has stride 2: layer voxel g sits on case voxel 2g
    np.testing.assert_allclose(image_map[::2, ::2, ::2], layer_map, rtol=1e-5, atol=1e-6)
    two = codes.dense([latent, (latent + 1) % 32])
    assert two.shape == (2, *fmap.shape)
    with pytest.raises(ParameterError, match="out of range"):
        codes.dense([32])
    with pytest.raises(ParameterError, match="image"):
        codes.latent_map(latent, on="world")


def test_sae_of_another_model_or_layer_is_refused_before_the_network_runs(setup, tmp_path):
    model, case, fmap, saes = setup
    sae = saes["topk"]
    calls = []
    handle = model.network.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(CompatibilityError, match="trained on model"):
            encode_case(SegmentationModel(model.network, model.config, "e" * 64, device="cpu"), sae, case)
        with pytest.raises(CompatibilityError, match="layer"):
            encode_case(model, sae, case, layer="model.1.submodule.0")
    finally:
        handle.remove()
    assert not calls
    # right model and layer name, wrong channel count: 4-channel weights that claim the 8-channel layer
    claims = save_sae(
        copy.deepcopy(sae), tmp_path / "claims-other-layer", SAEInfo(model.fingerprint, "model.1.submodule.0")
    )
    with pytest.raises(CompatibilityError, match="channels"):
        encode_case(model, load_sae(claims), case)


def test_flipped_input_gives_the_same_latent_map_in_physical_space(setup, tmp_path):
    """The same physical volume stored with its first voxel axis reversed: same map at the same RAS points."""
    import nibabel as nib

    model, case, _fmap, saes = setup
    flipped_dir = tmp_path / "flipped"
    flipped_dir.mkdir()
    for path in case.files.values():
        image = nib.load(path)
        data = np.asarray(image.dataobj)[::-1]
        affine = image.affine @ np.array([[-1, 0, 0, data.shape[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
        nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(flipped_dir / Path(path).name))
    flipped = read_case(flipped_dir)
    assert flipped.source_grid.orientation != case.source_grid.orientation
    latent = int(np.argmax(encode_case(model, saes["topk"], case).firing_counts()))
    original_map = encode_case(model, saes["topk"], case).latent_map(latent)
    flipped_map = encode_case(model, saes["topk"], flipped).latent_map(latent)
    assert flipped.grid.same_as(case.grid)
    np.testing.assert_allclose(flipped_map, original_map, rtol=1e-5, atol=1e-6)
    # written back in each input's own voxel order, the two files agree voxel for voxel once one is flipped
    np.testing.assert_allclose(flipped.to_source(flipped_map)[::-1], case.to_source(original_map), rtol=1e-5, atol=1e-6)
