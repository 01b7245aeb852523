"""A plain state dict + network JSON, and TorchScript weights: imported as ordinary MedSegLens models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from byom_cases import capture, case_arrays, lps_affine, read_files, write_case_folder

from MedSegLensLib.errors import CompatibilityError, InputError
from MedSegLensLib.models import ModelConfig, build_network, hookable_layers, load_model, save_model, tiny_config
from MedSegLensLib.models.external import import_model
from MedSegLensLib.models.external.semantics import class_outputs, region_outputs


@pytest.fixture
def network(tmp_path):
    torch.manual_seed(1)
    config = ModelConfig(
        "monai:SegResNet",
        hyper_parameters={"init_filters": 8, "blocks_down": [1, 1], "blocks_up": [1]},
        patch_size=(16, 16, 16),
        sliding_window={"overlap": 0.25, "mode": "gaussian", "batch_size": 2},
    )
    net = build_network(config).eval()
    config_file = tmp_path / "net.json"
    config_file.write_text(json.dumps(config.to_json()))
    return {"net": net, "config": config, "json": config_file}


def test_state_dict_import_equals_the_same_network_saved_natively(network, tmp_path):
    weights = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 7, "state_dict": network["net"].state_dict()}, weights)
    fingerprint = import_model(weights, "state-dict", tmp_path / "imported", network_json=network["json"])
    native = save_model(network["net"], network["config"], tmp_path / "native")
    assert fingerprint == native
    model = load_model(tmp_path / "imported", device="cpu")
    assert model.provenance["imported_from"]["format"] == "state-dict"
    case = read_files(write_case_folder(tmp_path / "c", case_arrays(shape=(20, 18, 16)), lps_affine()))
    np.testing.assert_array_equal(
        model.predict(case).labels, load_model(tmp_path / "native", device="cpu").predict(case).labels
    )


def test_torchscript_weights_are_read_without_running_the_script_and_hooks_work(network, tmp_path):
    scripted = torch.jit.script(network["net"])
    ts_file = tmp_path / "model.ts"
    torch.jit.save(scripted, str(ts_file))
    loaded = torch.jit.load(str(ts_file))
    with pytest.raises(RuntimeError, match="not supported on ScriptModules"):
        loaded.register_forward_hook(lambda *a: None)  # why MedSegLens rebuilds the eager network
    weights_pt = tmp_path / "w.pt"
    torch.save(network["net"].state_dict(), weights_pt)
    fingerprint = import_model(ts_file, "torchscript", tmp_path / "from_ts", network_json=network["json"])
    assert fingerprint == import_model(weights_pt, "state-dict", tmp_path / "from_pt", network_json=network["json"])
    model = load_model(tmp_path / "from_ts", device="cpu")
    layer = hookable_layers(model)[1]
    case = read_files(write_case_folder(tmp_path / "c", case_arrays(shape=(20, 18, 16)), lps_affine()))
    seen = capture(model, layer.name, case)
    assert seen and tuple(seen[0].shape[1:]) == layer.shape
    with pytest.raises(InputError, match="TorchScript"):
        import_model(ts_file, "state-dict", tmp_path / "wrong", network_json=network["json"])


def test_weights_of_another_network_and_channel_override(network, tmp_path):
    other = build_network(tiny_config("unet"))
    weights = tmp_path / "other.pt"
    torch.save(other.state_dict(), weights)
    with pytest.raises(CompatibilityError, match="another model"):
        import_model(weights, "state-dict", tmp_path / "m", network_json=network["json"])
    torch.save(network["net"].state_dict(), weights)
    import_model(weights, "state-dict", tmp_path / "m", network_json=network["json"], channels="t2f,t2w,t1c,t1n")
    assert load_model(tmp_path / "m", device="cpu").config.modalities == ("t2f", "t2w", "t1c", "t1n")


@pytest.mark.parametrize(
    "names, lookup",
    [
        (["necrotic", "edema", "enhancing tumour"], {0: 0, 1: 1, 2: 2, 3: 3}),
        (["edema", "non-enhancing tumor", "enhancing tumor"], {0: 0, 1: 2, 2: 1, 3: 3}),
    ],
)
def test_class_names_map_onto_brats_labels(names, lookup):
    meaning = class_outputs([(0, "background"), *((i + 1, n) for i, n in enumerate(names))])
    assert meaning.brats and meaning.lookup == lookup


def test_unknown_outputs_keep_their_own_labels_until_named():
    meaning = class_outputs([(0, "background"), (1, "tumour"), (2, "cyst")])
    assert not meaning.brats and meaning.labels == ((0, "background"), (1, "tumour"), (2, "cyst"))
    renamed = region_outputs(["a", "b", "c"], renamed=["whole tumor", "tumor core", "enhancing"])
    assert renamed.brats and renamed.lookup == {0: 0, 1: 2, 2: 1, 3: 3}
