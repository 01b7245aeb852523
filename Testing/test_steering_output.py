"""Steered segmentations on disk: input geometry, provenance in the sidecar and in the file, the CLI and its "
"refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import subprocess_env
from models_support import tiny_case_arrays, tiny_training_cohort, trained_tiny_model, write_case
from steering_support import UNET_DECODER, train_layer_sae

from MedSegLensLib.cli.main import main
from MedSegLensLib.data import read_case, read_volume
from MedSegLensLib.errors import IntegrityError, ParameterError
from MedSegLensLib.models import load_model
from MedSegLensLib.provenance import Provenance
from MedSegLensLib.steering import (
    RegionSpec,
    SteeringSpec,
    open_session,
    read_segmentation_provenance,
    read_sidecar_provenance,
    sidecar_path,
    steering_provenance,
    write_steered_segmentation,
)

pytestmark = pytest.mark.one_thread  # tiny networks: one torch thread (conftest.py)


@pytest.fixture(scope="module")
def artefacts(workdir):
    torch.set_num_threads(1)
    model_dir = trained_tiny_model("unet", workdir)
    model = load_model(model_dir, device="cpu")
    cases = sorted(p for p in tiny_training_cohort("unet", workdir).iterdir() if p.is_dir())
    sae_dir = workdir / "sae-output"
    train_layer_sae(model, cases, UNET_DECODER, n_latents=16, k=2, folder=sae_dir)
    # an input in LPS-like voxel order (x and y flipped), so "the input's geometry" is not the canonical one
    images, labels = tiny_case_arrays(np.random.default_rng(3))
    affine = np.array([[-2.0, 0, 0, 46.0], [0, -2.0, 0, 46.0], [0, 0, 2.0, -10.0], [0, 0, 0, 1]])
    flipped = write_case(workdir / "flipped", "flipped", images, labels, affine)
    return model_dir, model, sae_dir, flipped


def test_spec_json_round_trip_and_refusals():
    spec = SteeringSpec((4, 9), (2.5, -1.0), "additive", RegionSpec("tumour-margin", 10))
    assert SteeringSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert RegionSpec.parse("tumour-margin:7.5") == RegionSpec("tumour-margin", 7.5)
    assert RegionSpec.parse("mask:a.nii.gz").path == "a.nii.gz"
    for bad in [
        lambda: SteeringSpec((1, 2), (1.0,), "additive"),
        lambda: SteeringSpec((1, 1), (1.0, 2.0), "additive"),
        lambda: SteeringSpec((1,), (11.0,), "additive"),
        lambda: SteeringSpec((1,), (-0.5,), "multiplicative"),
        lambda: SteeringSpec((1,), (float("nan"),), "clamp"),
        lambda: SteeringSpec((), (), "additive"),
        lambda: SteeringSpec((1,), (1.0,), "rotate"),
        lambda: RegionSpec.parse("tumour-margin:x"),
        lambda: RegionSpec.parse("box:3"),
        lambda: RegionSpec("tumour-margin", -1),
        lambda: SteeringSpec.from_json({"latents": [1]}),
    ]:
        with pytest.raises(ParameterError) as info:
            bad()
        assert "\n" not in str(info.value)
    with pytest.raises(ParameterError, match="latent 16 does not exist"):
        SteeringSpec((16,), (1.0,), "additive").check_latents(16)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_provenance_round_trips_through_the_sidecar_and_the_file(artefacts, tmp_path, suffix):
    _, model, sae_dir, flipped = artefacts
    case = read_case(flipped)
    spec = SteeringSpec((3, 7), (2.0, -1.5), "additive", RegionSpec("tumour-margin", 4))
    session = open_session(model, sae_dir, case)
    result = session.steer(spec)
    provenance = steering_provenance(session, spec)
    seg, sidecar = write_steered_segmentation(case, result.prediction.labels, tmp_path / f"steered{suffix}", provenance)
    assert sidecar == sidecar_path(seg) and sidecar.name == "steered.provenance.json"
    for read in (read_segmentation_provenance, read_sidecar_provenance):
        back = read(seg)
        assert back == provenance
        assert (back.latents, back.strengths, back.mode) == ([3, 7], [2.0, -1.5], "additive")
        assert back.model_sha256 == model.fingerprint and back.layer == UNET_DECODER
        assert back.region == {"kind": "tumour-margin", "margin_mm": 4.0} and back.sae_sha256
    written = read_volume(seg, kind="label")
    source = read_volume(flipped / "flipped-t1n.nii.gz")
    assert written.grid.shape == source.grid.shape and np.allclose(written.grid.affine, source.grid.affine)
    assert np.array_equal(written.array, case.to_source(result.prediction.labels))
    with pytest.raises(Exception, match="already exists"):
        write_steered_segmentation(case, result.prediction.labels, seg, provenance)


def test_a_segmentation_without_provenance_says_so(artefacts, tmp_path):
    _, model, _, flipped = artefacts
    case = read_case(flipped)
    plain = tmp_path / "plain.nii.gz"
    case.write_like_input(model.predict(case).labels, plain)
    with pytest.raises(IntegrityError, match="carries no MedSegLens provenance"):
        read_segmentation_provenance(plain)
    bad = tmp_path / "bad.provenance.json"
    bad.write_text('{"latents": [1]}')
    with pytest.raises(IntegrityError):
        read_sidecar_provenance(bad)
    assert Provenance.from_json(Provenance([1], [2.0], "additive", "m", "s").to_json()).latents == [1]


def _steer(args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "MedSegLensLib", "steer", *map(str, args)],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_steer_command_writes_the_input_geometry_with_provenance_and_never_overwrites(artefacts, tmp_path):
    model_dir, model, sae_dir, flipped = artefacts
    out = tmp_path / "cli.nii.gz"
    done = _steer(
        [
            "--model",
            model_dir,
            "--sae",
            sae_dir,
            "--case",
            flipped,
            "--latent",
            "3,7",
            "--alpha",
            "2,-1",
            "--mode",
            "additive",
            "--region",
            "tumour-margin:4",
            "--out",
            out,
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    image = nib.load(str(out))
    reference = nib.load(str(flipped / "flipped-t1n.nii.gz"))
    assert image.shape == reference.shape and np.allclose(image.affine, reference.affine)
    record = read_segmentation_provenance(out)
    assert record.latents == [3, 7] and record.strengths == [2.0, -1.0] and record.region["margin_mm"] == 4.0
    assert read_sidecar_provenance(out) == record
    case = read_case(flipped)
    session = open_session(model, sae_dir, case)
    expected = session.steer(SteeringSpec((3, 7), (2.0, -1.0), "additive", RegionSpec("tumour-margin", 4)))
    assert np.array_equal(np.asarray(image.dataobj), case.to_source(expected.prediction.labels))
    done = _steer(
        ["--model", model_dir, "--sae", sae_dir, "--case", flipped, "--latent", "1", "--alpha", "1", "--out", out],
        tmp_path,
    )
    assert done.returncode != 0 and "already exists" in done.stderr


def test_bad_steering_requests_are_refused_with_one_line_before_any_work(artefacts, tmp_path, capsys):
    model_dir, _, sae_dir, flipped = artefacts
    refusals = {
        ("--latent", "16", "--alpha", "1"): "latent 16 does not exist",
        ("--latent", "1,2", "--alpha", "1"): "2 latents but 1 strengths",
        ("--latent", "1", "--alpha", "12"): "outside [-10, 10]",
        ("--latent", "1", "--alpha", "-1", "--mode", "multiplicative"): "outside [0, 10]",
        ("--latent", "x", "--alpha", "1"): "comma-separated int",
        ("--latent", "1", "--alpha", "1", "--region", "tumour-margin:far"): "margin must be a number",
        ("--latent", "1", "--alpha", "1", "--region", "mask:" + str(tmp_path / "none.nii.gz")): "file not found",
    }
    for options, message in refusals.items():
        code = main(
            [
                "steer",
                "--model",
                str(model_dir),
                "--sae",
                str(sae_dir),
                "--case",
                str(flipped),
                "--out",
                str(tmp_path / "x.nii.gz"),
                *options,
            ]
        )
        err = capsys.readouterr().err
        assert code != 0 and message in err, (options, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not (tmp_path / "x.nii.gz").exists()
