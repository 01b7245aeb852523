"""A MONAI bundle made with MONAI's bundle code, imported and analysed through MedSegLens.

Parity: the network-grid logits equal those of the bundle's own pipeline run by
`monai.bundle.ConfigParser` (preprocessing, network, inferer), and the labels
equal its postprocessing (sigmoid, Invertd back to the file, threshold) painted
with the BraTS convention, for a case at another spacing than the bundle's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from byom_bundle_source import build_bundle
from byom_cases import capture, case_arrays, imported_source, lps_affine, read_files, write_case_folder

from MedSegLensLib.errors import CompatibilityError
from MedSegLensLib.models import hookable_layers, load_model
from MedSegLensLib.models.external import import_model


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    yield from imported_source(tmp_path_factory, "bundle", build_bundle, "monai-bundle")


def bundle_reference(source, files):
    """The bundle's own inference with MONAI's ConfigParser: (network-grid logits, postprocessed masks)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(source / "configs" / "inference.json"))
    network = parser.get_parsed_content("network")
    network.load_state_dict(torch.load(source / "models" / "model.pt", weights_only=True))
    data = parser.get_parsed_content("preprocessing")({"image": [str(files[m]) for m in ("t1c", "t1n", "t2w", "t2f")]})
    with torch.no_grad():
        logits = parser.get_parsed_content("inferer")(data["image"][None], network.eval())
    data["pred"] = logits[0]
    return logits, parser.get_parsed_content("postprocessing")(data)["pred"].numpy()


def test_import_reads_channels_outputs_and_pipeline(bundle):
    model = load_model(bundle["model_dir"], device="cpu")
    assert model.config.architecture == "monai-bundle:UNet" and model.config.patch_size == (16, 16, 16)
    assert model.config.modalities == ("t1c", "t1n", "t2w", "t2f")  # metadata: T1c, T1, T2, FLAIR
    assert model.outputs.kind == "regions" and model.outputs.brats and model.outputs.names == ["TC", "WT", "ET"]
    manifest = json.loads((bundle["model_dir"] / "model.json").read_text())
    assert [t["target"] for t in manifest["description"]["preprocessing"]] == [
        "Orientationd",
        "Spacingd",
        "NormalizeIntensityd",
    ]
    assert manifest["description"]["postprocessing"]["activation"] == "sigmoid"
    assert manifest["input_orientation"] == "RAS"  # the bundle's own Orientationd


def test_parity_with_the_bundle_pipeline(bundle, tmp_path):
    files = write_case_folder(tmp_path / "c1", case_arrays(seed=3), lps_affine(spacing=1.0))  # bundle works at 1.5 mm
    case = read_files(files)
    model = load_model(bundle["model_dir"], device="cpu")
    prepared = model.prepare(case)
    logits = model.logits(prepared)
    ref_logits, masks = bundle_reference(bundle["source"], files)
    assert prepared.resampled and prepared.grid.shape == tuple(ref_logits.shape[2:])
    torch.testing.assert_close(logits, ref_logits.as_tensor(), rtol=0, atol=0)
    tc, wt, et = masks > 0
    painted = np.zeros(wt.shape, np.uint8)
    painted[wt], painted[tc], painted[et] = 2, 1, 3  # BraTS: innermost region wins
    labels = case.to_source(model.to_prediction(logits, prepared).labels)
    np.testing.assert_array_equal(labels, painted)


def test_layers_and_a_hook(bundle, tmp_path):
    model = load_model(bundle["model_dir"], device="cpu")
    layers = hookable_layers(model)
    assert [layer.role for layer in layers] == ["encoder 0", "encoder 1", "bottleneck", "decoder 1", "head (logits)"]
    case = read_files(write_case_folder(tmp_path / "c2", case_arrays(seed=4), lps_affine()))
    seen = capture(model, layers[1].name, case)
    assert seen and all(tuple(t.shape[1:]) == layers[1].shape for t in seen)


def test_a_torchscript_only_bundle_gives_the_same_weights(bundle, tmp_path):
    ts_only = tmp_path / "ts_bundle"
    (ts_only / "models").mkdir(parents=True)
    (ts_only / "configs").mkdir()
    for name in ("inference.json", "metadata.json"):
        (ts_only / "configs" / name).write_text((bundle["source"] / "configs" / name).read_text())
    (ts_only / "models" / "model.ts").write_bytes((bundle["source"] / "models" / "model.ts").read_bytes())
    assert import_model(ts_only, "monai-bundle", tmp_path / "m") == bundle["fingerprint"]


def test_expressions_and_foreign_targets_are_refused_unevaluated(bundle, tmp_path):
    marker = tmp_path / "evaluated"
    for key, value in (
        ("network_def", f"$__import__('pathlib').Path('{marker}').touch()"),
        ("network_def", {"_target_": "os.system", "command": f"touch {marker}"}),
        ("inferer", {"_target_": "SlidingWindowInferer", "roi_size": "$[16] * 3"}),
    ):
        bad = tmp_path / f"bad_{len(list(tmp_path.iterdir()))}"
        (bad / "configs").mkdir(parents=True)
        (bad / "models").mkdir()
        config = json.loads((bundle["source"] / "configs" / "inference.json").read_text())
        config[key] = value
        (bad / "configs" / "inference.json").write_text(json.dumps(config))
        (bad / "models" / "model.pt").write_bytes((bundle["source"] / "models" / "model.pt").read_bytes())
        with pytest.raises(CompatibilityError, match=key):
            import_model(bad, "monai-bundle", tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_small_sae_trains_on_an_imported_models_activations(bundle, tmp_path):
    from byom_cases import train_sae_on_layer

    model = load_model(bundle["model_dir"], device="cpu")
    layer = hookable_layers(model)[3]  # decoder 1
    cases = [
        read_files(write_case_folder(tmp_path / f"c{i}", case_arrays(seed=20 + i), lps_affine())) for i in range(2)
    ]
    _sae, fidelity, rows = train_sae_on_layer(model, layer.name, cases, tmp_path / "sae")
    assert rows.shape[1] == layer.channels and rows.shape[0] > 1000
    assert fidelity.explained_variance > 0.6, fidelity
    assert fidelity.l0_mean <= 2.5
