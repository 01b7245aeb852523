"""Untrusted checkpoints: refused or read inertly, never executed (the payload's marker file never appears)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import subprocess_env
from monai.networks.nets import UNet
from safetensors.torch import load_file

from MedSegLensLib.errors import IntegrityError
from MedSegLensLib.models import load_model, tiny_config
from MedSegLensLib.models.external import convert_checkpoint, import_model
from MedSegLensLib.models.external.checkpoints import load_checkpoint, read_weight_file


class Payload:
    """Pickles as a call of `open(marker, "w")`: unpickling it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def tiny_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    config = tiny_config("unet")
    return UNet(spatial_dims=3, in_channels=4, out_channels=4, dropout=0.0, **config.hyper_parameters)


@pytest.fixture
def poisoned(tmp_path):
    """A zip checkpoint (torch.save) and a bare pickle, each holding a state dict and the payload."""
    marker = tmp_path / "payload-ran"
    state = tiny_unet().state_dict()
    zip_file = tmp_path / "model.pth"
    torch.save({"state_dict": state, "extra": Payload(marker)}, zip_file)
    bare = tmp_path / "bare.pkl"
    with bare.open("wb") as handle:
        pickle.dump({"state_dict": OrderedDict((k, v.numpy()) for k, v in state.items()), "x": Payload(marker)}, handle)
    return {"marker": marker, "zip": zip_file, "bare": bare, "state": state}


def test_weights_only_refuses_both_formats_without_running_them(poisoned):
    for path in (poisoned["zip"], poisoned["bare"]):
        with pytest.raises(IntegrityError) as refused:
            load_checkpoint(path)
        message = str(refused.value)
        assert "nothing in it was run" in message and ("builtins.open" in message or "io.open" in message)
    assert f"medseglens convert-checkpoint {poisoned['zip']}" in str(_refusal(poisoned["zip"]))
    assert "cannot be read without running it" in str(_refusal(poisoned["bare"]))
    assert not poisoned["marker"].exists()


def test_import_model_command_refuses_in_a_real_process(poisoned, tmp_path):
    network_json = tmp_path / "net.json"
    network_json.write_text(json.dumps(tiny_config("unet").to_json()))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "MedSegLensLib",
            "import-model",
            str(poisoned["zip"]),
            "--format",
            "state-dict",
            "--network",
            str(network_json),
            "--out",
            str(tmp_path / "m"),
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "refused" in run.stderr and "medseglens convert-checkpoint" in run.stderr
    assert not poisoned["marker"].exists() and not (tmp_path / "m").exists()


def test_convert_checkpoint_extracts_the_tensors_and_runs_nothing(poisoned, tmp_path, capsys):
    from MedSegLensLib.cli.main import main

    out = tmp_path / "model.safetensors"
    assert main(["convert-checkpoint", str(poisoned["zip"]), "--out", str(out)]) == 0
    assert "not run" in capsys.readouterr().out
    assert not poisoned["marker"].exists()
    tensors = load_file(str(out))
    assert set(tensors) == set(poisoned["state"])
    assert all(torch.equal(tensors[k], v) for k, v in poisoned["state"].items())
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    assert sidecar["not_run"] and all("open" in name for name in sidecar["not_run"])
    # the converted weights import as a model, and the marker still never appears
    network_json = tmp_path / "net.json"
    network_json.write_text(json.dumps(tiny_config("unet").to_json()))
    import_model(out, "state-dict", tmp_path / "m", network_json=network_json)
    assert load_model(tmp_path / "m", device="cpu").config.architecture == "unet"
    assert not poisoned["marker"].exists()
    with pytest.raises(IntegrityError, match="cannot be read without running it"):
        convert_checkpoint(poisoned["bare"], tmp_path / "bare.safetensors")  # a bare pickle is weights-only or nothing
    assert not poisoned["marker"].exists()


def _refusal(path) -> IntegrityError:
    with pytest.raises(IntegrityError) as refused:
        load_checkpoint(path)
    return refused.value


def test_plain_checkpoints_with_numpy_scalars_load(tmp_path):
    state = tiny_unet().state_dict()
    path = tmp_path / "trainer.pth"
    torch.save(
        {
            "model": {f"module.{k}": v for k, v in state.items()},
            "best_dice": np.float32(0.7),
            "log": [np.float64(0.1)],
            "epoch": 3,
        },
        path,
    )
    tensors = read_weight_file(path)
    assert set(tensors) == set(state)  # the DataParallel prefix is dropped
    assert load_checkpoint(path)["best_dice"] == np.float32(0.7)


def test_a_whole_pickled_model_converts_by_module_names(tmp_path):
    network = tiny_unet()
    path = tmp_path / "whole.pt"
    torch.save(network, path)
    with pytest.raises(IntegrityError, match="monai.networks") as refusal:
        load_checkpoint(path)
    # The names are listed in sorted order, so the message does not depend on hash seeds.
    listed = str(refusal.value).split("(", 1)[1].split(" and ", 1)[0].split(", ")
    assert len(listed) == 5 and listed == sorted(listed)
    result = convert_checkpoint(path, tmp_path / "whole.safetensors")
    assert "monai.networks.nets.unet.UNet" in result.not_run
    tensors = load_file(str(result.out))
    assert set(tensors) == set(network.state_dict())


def test_tampered_imported_weights_are_detected(tmp_path):
    network_json = tmp_path / "net.json"
    network_json.write_text(json.dumps(tiny_config("unet").to_json()))
    weights = tmp_path / "w.pt"
    torch.save(tiny_unet().state_dict(), weights)
    import_model(weights, "state-dict", tmp_path / "m", network_json=network_json)
    stored = tmp_path / "m" / "weights.safetensors"
    data = bytearray(stored.read_bytes())
    data[-1] ^= 1
    stored.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        load_model(tmp_path / "m", device="cpu")
    assert os.path.exists(weights)
