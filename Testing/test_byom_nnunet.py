"""An nnU-Net v2 model folder made by nnU-Net itself, imported and analysed through MedSegLens.

Parity: MedSegLens's labels and probabilities equal `nnUNetPredictor`'s (no
mirroring) on the same files, bit for bit, for a case at another spacing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("nnunetv2", reason="the byom extra (nnunetv2) is not installed")

from byom_cases import (  # noqa: E402
    capture,
    case_arrays,
    flipped_copy,
    imported_source,
    lps_affine,
    read_files,
    write_case_folder,
)
from byom_nnunet_source import build_nnunet_model  # noqa: E402

from MedSegLensLib.cli.main import main  # noqa: E402
from MedSegLensLib.errors import CompatibilityError, ParameterError  # noqa: E402
from MedSegLensLib.models import hookable_layers, load_model  # noqa: E402
from MedSegLensLib.models.external import import_model  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nnunet(tmp_path_factory):
    yield from imported_source(tmp_path_factory, "nnunet", build_nnunet_model, "nnunetv2")


def test_import_reads_channels_regions_and_plans(nnunet):
    model = load_model(nnunet["model_dir"], device="cpu")
    assert model.fingerprint == nnunet["fingerprint"]
    assert model.config.architecture == "nnunetv2:PlainConvUNet"
    assert model.config.modalities == ("t1n", "t1c", "t2w", "t2f")  # from T1, T1ce, T2, Flair
    assert model.outputs.kind == "regions" and model.outputs.brats
    # Dataset137's convention: nnU-Net paints WT 1, TC 2, ET 3 -> BraTS ED 2, NCR 1, ET 3
    assert model.outputs.lookup == {0: 0, 1: 2, 2: 1, 3: 3}
    plans = json.loads((nnunet["source"] / "plans.json").read_text())
    assert list(model.config.patch_size) == plans["configurations"]["3d_fullres"]["patch_size"]
    manifest = json.loads((nnunet["model_dir"] / "model.json").read_text())
    assert set(manifest["source"]["files"]) == {"dataset.json", "plans.json", "fold_0/checkpoint_final.pth"}
    assert manifest["input_orientation"] == "LPS"


def test_layers_hooks_and_capture(nnunet, tmp_path):
    model = load_model(nnunet["model_dir"], device="cpu")
    layers = hookable_layers(model)
    roles = {layer.name: layer.role for layer in layers}
    assert roles["encoder.stages.2"] == "bottleneck" and roles["decoder.stages.1"] == "decoder stage 2"
    assert layers[-1].role == "head (logits)" and layers[-1].channels == 3
    case = read_files(write_case_folder(tmp_path / "c1", case_arrays(), lps_affine()))
    decoder = next(layer for layer in layers if layer.name == "decoder.stages.0")
    seen = capture(model, decoder.name, case)
    assert seen and all(tuple(t.shape[1:]) == decoder.shape for t in seen)
    assert all(torch.isfinite(t).all() for t in seen)


def test_labels_and_probabilities_equal_nnunet_predictor(nnunet, tmp_path):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    files = write_case_folder(tmp_path / "c2", case_arrays(seed=7), lps_affine(spacing=1.3))  # resampled to 1 mm
    case = read_files(files)
    model = load_model(nnunet["model_dir"], device="cpu")
    ours = model.predict(case, probabilities=True)

    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=False,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        allow_tqdm=False,
    )
    predictor.initialize_from_trained_model_folder(str(nnunet["source"]), use_folds=(0,))
    image, properties = SimpleITKIO().read_images([str(files[m]) for m in ("t1n", "t1c", "t2w", "t2f")])
    segmentation, probabilities = predictor.predict_single_npy_array(image, properties, None, None, True)
    brats = {0: 0, 1: 2, 2: 1, 3: 3}  # nnU-Net's painted value -> BraTS label for this dataset
    expected = np.vectorize(brats.get)(segmentation).transpose(2, 1, 0)  # SimpleITK (z, y, x) -> file (i, j, k)
    assert len(np.unique(expected)) >= 3, "the comparison covers several labels"
    np.testing.assert_array_equal(case.to_source(ours.labels), expected)
    ours_probabilities = np.stack([case.to_source(p) for p in ours.probabilities])
    np.testing.assert_array_equal(ours_probabilities, probabilities.transpose(0, 3, 2, 1))


def test_a_flipped_file_gives_the_same_physical_result(nnunet, tmp_path):
    arrays = case_arrays(seed=9)
    model = load_model(nnunet["model_dir"], device="cpu")
    lps = read_files(write_case_folder(tmp_path / "lps", arrays, lps_affine()))
    ras = read_files(flipped_copy(tmp_path / "ras", arrays, lps_affine()))
    assert lps.source_grid.orientation == "LPS" and ras.source_grid.orientation == "RAS"
    np.testing.assert_array_equal(model.predict(lps).labels, model.predict(ras).labels)


def test_fold_choice_and_refusals(nnunet, tmp_path):
    with pytest.raises(ParameterError, match="has fold"):
        import_model(nnunet["source"], "nnunetv2", tmp_path / "f3", fold="3")
    plans = json.loads((nnunet["source"] / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["nonlin"] = "builtins.eval"
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("dataset.json",):
        (bad / name).write_text((nnunet["source"] / name).read_text())
    (bad / "plans.json").write_text(json.dumps(plans))
    (bad / "fold_0").mkdir()
    (bad / "fold_0" / "checkpoint_final.pth").write_bytes(
        (nnunet["source"] / "fold_0" / "checkpoint_final.pth").read_bytes()
    )
    with pytest.raises(CompatibilityError, match="builtins.eval"):
        import_model(bad, "nnunetv2", tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_import_and_segment_commands(nnunet, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["import-model", str(nnunet["source"]), "--format", "nnunetv2", "--out", str(out), "--fold", "0"]) == 0
    assert "nnunetv2:PlainConvUNet" in capsys.readouterr().out
    case_dir = tmp_path / "BraTS-X"
    write_case_folder(case_dir, case_arrays(seed=11), lps_affine())
    seg = tmp_path / "seg.nii.gz"
    assert main(["segment", "--model", str(out), "--case", str(case_dir), "--out", str(seg), "--device", "cpu"]) == 0
    import nibabel as nib

    written = nib.load(str(seg))
    assert written.shape == (26, 23, 21) and np.allclose(written.affine, lps_affine())
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2, 3}
    assert main(["import-model", str(nnunet["source"]), "--format", "nnunetv2", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_a_small_sae_trains_on_an_imported_nnunet_layer(nnunet, tmp_path):
    from byom_cases import train_sae_on_layer

    model = load_model(nnunet["model_dir"], device="cpu")
    cases = [
        read_files(write_case_folder(tmp_path / f"c{i}", case_arrays(seed=30 + i), lps_affine())) for i in range(2)
    ]
    _sae, fidelity, rows = train_sae_on_layer(model, "decoder.stages.0", cases, tmp_path / "sae")
    assert rows.shape[1] == 8
    assert fidelity.explained_variance > 0.6, fidelity
