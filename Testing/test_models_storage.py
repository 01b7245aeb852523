"""Model folders: bit-exact save/load, and refusal of tampered or mismatched weights (never unpickled)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import subprocess_env
from models_support import one_thread  # noqa: F401 (fixtures)
from safetensors.torch import save_file

from MedSegLensLib.errors import CompatibilityError, InputError, IntegrityError, OutputError
from MedSegLensLib.models import build_network, load_model, save_model, tiny_config
from MedSegLensLib.models.cpu_convolution import route_conv3d_to_onednn


def _randomised(network: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial weights (not the constructor's) so that a round trip has something to lose."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for tensor in network.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
    return network


@pytest.mark.parametrize("arch", ["unet", "segformer"])
def test_save_load_round_trip_is_bit_exact(tmp_path, arch):
    config = tiny_config(arch, spacing=(2.0, 2.0, 2.0))
    network = _randomised(build_network(config)).eval()
    digest = save_model(network, config, tmp_path / "model", provenance={"note": "test"})
    model = load_model(tmp_path / "model", device="cpu")
    assert model.fingerprint == digest and model.config == config and model.provenance == {"note": "test"}
    original, loaded = network.state_dict(), model.network.state_dict()
    assert original.keys() == loaded.keys()
    for name in original:
        assert torch.equal(original[name], loaded[name]), name
    x = torch.randn(1, 4, *config.patch_size)
    route_conv3d_to_onednn(network)  # the loaded model runs oneDNN convolutions: compare like with like
    with torch.no_grad():
        assert torch.equal(network(x), model.network(x))
    with pytest.raises(OutputError, match="already holds a model"):
        save_model(network, config, tmp_path / "model")


def test_tampered_weights_are_refused(tmp_path):
    config = tiny_config("unet")
    save_model(build_network(config), config, tmp_path / "model")
    weights = tmp_path / "model" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # one bit of one parameter
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as info:
        load_model(tmp_path / "model", device="cpu")
    message = str(info.value)
    assert "weights.safetensors" in message and "modified or corrupted" in message and "\n" not in message


def test_weights_of_another_network_are_refused_even_with_a_matching_hash(tmp_path):
    unet, segformer = tiny_config("unet"), tiny_config("segformer")
    save_model(build_network(unet), unet, tmp_path / "unet")
    save_model(build_network(segformer), segformer, tmp_path / "segformer")
    # copy the SegFormer weights and their recorded hash under the U-Net's description
    shutil.copyfile(tmp_path / "segformer" / "weights.safetensors", tmp_path / "unet" / "weights.safetensors")
    manifest = json.loads((tmp_path / "unet" / "model.json").read_text())
    manifest["weights"]["sha256"] = json.loads((tmp_path / "segformer" / "model.json").read_text())["weights"]["sha256"]
    (tmp_path / "unet" / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(CompatibilityError, match="weights of a 'segformer' network"):
        load_model(tmp_path / "unet", device="cpu")


def test_weights_with_other_shapes_are_refused(tmp_path):
    small = tiny_config("unet")
    wider = tiny_config("unet", hyper_parameters={**small.hyper_parameters, "channels": [6, 8, 16]})
    save_model(build_network(small), small, tmp_path / "model")
    network = build_network(wider)
    tensors = {k: v.contiguous() for k, v in network.state_dict().items()}
    save_file(tensors, str(tmp_path / "other.safetensors"))
    shutil.copyfile(tmp_path / "other.safetensors", tmp_path / "model" / "weights.safetensors")
    from MedSegLensLib.fileio import sha256_file

    manifest = json.loads((tmp_path / "model" / "model.json").read_text())
    manifest["weights"]["sha256"] = sha256_file(tmp_path / "model" / "weights.safetensors")
    (tmp_path / "model" / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(CompatibilityError, match="wrong shape for model.0"):
        load_model(tmp_path / "model", device="cpu")


def test_a_pickle_in_place_of_the_weights_is_never_loaded(tmp_path):
    config = tiny_config("unet")
    save_model(build_network(config), config, tmp_path / "model")
    weights = tmp_path / "model" / "weights.safetensors"
    torch.save(build_network(config).state_dict(), weights)  # a pickle-based file under the same name
    from MedSegLensLib.fileio import sha256_file

    manifest = json.loads((tmp_path / "model" / "model.json").read_text())
    manifest["weights"]["sha256"] = sha256_file(weights)
    (tmp_path / "model" / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="not a readable safetensors file"):
        load_model(tmp_path / "model", device="cpu")


def test_missing_or_foreign_model_folders(tmp_path):
    with pytest.raises(InputError, match="model folder not found"):
        load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no model.json"):
        load_model(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CompatibilityError, match="not a MedSegLens model"):
        load_model(tmp_path / "other")


@pytest.mark.slow  # a real subprocess: importing torch and MONAI takes 10-30 s on the shared CPUs
def test_cli_reports_tampering_in_one_line(tmp_path):
    config = tiny_config("segformer")
    save_model(build_network(config), config, tmp_path / "model")
    weights = tmp_path / "model" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    result = subprocess.run(
        [sys.executable, "-m", "MedSegLensLib", "layers", "--model", str(tmp_path / "model")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medseglens layers: error: ") and "sha256" in lines[0]
    assert "Traceback" not in result.stderr
