"""`medseglens sae train | eval | extract`, held-out evaluation with Dice recovered, and resumable SAE fitting."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import subprocess_env
from models_support import one_thread, trained_tiny_model, write_cohort  # noqa: F401 (fixtures)
from worker_cases import save_tiny_model

from MedSegLensLib.cli.main import main
from MedSegLensLib.data import discover_cohort
from MedSegLensLib.models import load_model
from MedSegLensLib.sae import (
    STRATA,
    ActivationStore,
    SAEConfig,
    SAEInfo,
    SAETrainingSettings,
    SparseAutoencoder,
    load_sae,
)
from MedSegLensLib.sae.evaluation import evaluate_sae
from MedSegLensLib.sae.extract import extract_activations
from MedSegLensLib.sae.fit import fit_layer_sae, partial_dir

LAYER = "model.1.submodule.0"  # tiny U-Net encoder 1: 8 channels at stride 4


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def trained(workdir):
    return trained_tiny_model("unet", workdir)


@pytest.fixture(scope="module")
def heldout(workdir):
    return write_cohort(workdir / "heldout", 2, seed=31, prefix="held")


def identity_sae(channels: int, fingerprint: str, layer: str) -> SparseAutoencoder:
    """A real TopK SAE that reconstructs exactly: latents +x_c and -x_c, k = channels."""
    sae = SparseAutoencoder(SAEConfig(channels, 2 * channels, channels, "topk"))
    both = torch.cat([torch.eye(channels), -torch.eye(channels)])
    with torch.no_grad():
        sae.W_enc.copy_(both)
        sae.W_dec.copy_(both)
    sae.info = SAEInfo(fingerprint, layer)
    return sae


def test_identity_sae_recovers_all_of_the_dice(trained, heldout):
    model = load_model(trained, device="cpu")
    layer = "model.0"  # zeroing the first block destroys the segmentation; the identity must restore it
    result = evaluate_sae(model, identity_sae(4, model.fingerprint, layer), discover_cohort(heldout))
    assert result.labelled_cases == 2
    assert result.dice["original"] == result.dice["sae"]
    for region in ("WT", "TC", "ET"):
        assert result.dice["zero_ablation"][region] < result.dice["original"][region]
        assert result.dice_recovered[region] == 1.0
    assert result.fidelity.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert result.fidelity_brain_voxels.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert result.fidelity.l0_mean <= 4


def test_train_and_eval_commands(trained, heldout, workdir, capsys):
    cohort = write_cohort(workdir / "sae-train", 3, seed=30, prefix="train")
    out = workdir / "cli-sae"
    train = [
        "sae",
        "train",
        "--model",
        str(trained),
        "--layer",
        LAYER,
        "--data",
        str(cohort),
        "--out",
        str(out),
        "--latents",
        "32",
        "--k",
        "4",
        "--kind",
        "topk",
        "--rows",
        "16384",
        "--batch-size",
        "1024",
        "--seed",
        "2",
        "--quota",
        "background=64",
    ]
    assert main(train) == 0
    captured = capsys.readouterr()
    assert "capture" in captured.err and "FVU=" in captured.err and "L0=" in captured.err and "dead=" in captured.err
    assert f"wrote {out}: topk SAE, 8 -> 32 latents" in captured.out
    sae = load_sae(out)
    model = load_model(trained, device="cpu")
    assert sae.info.layer == LAYER and sae.info.model_fingerprint == model.fingerprint
    data = sae.info.training["data"]
    assert data["cases"] == 3 and data["quotas"]["background"] == 64
    assert not partial_dir(out).exists() and (workdir / "cli-sae-activations" / "manifest.json").exists()
    assert main(train) == 2 and "already exists" in capsys.readouterr().err

    report = workdir / "eval.json"
    assert (
        main(["sae", "eval", "--model", str(trained), "--sae", str(out), "--data", str(heldout), "--out", str(report)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "Dice recovered WT" in printed and f"wrote {report}" in printed
    result = json.loads(report.read_text())
    fidelity = result["fidelity_stratified_rows"]
    assert 0.5 < fidelity["explained_variance"] <= 1.0 and fidelity["l0_mean"] <= 4
    assert sum(fidelity["firing_frequency_counts"]) == round(32 * (1 - fidelity["dead_fraction"]))
    dice, recovered = result["dice_mean"], result["dice_recovered"]
    assert set(recovered) == {"WT", "TC", "ET"}
    for region, value in recovered.items():  # the written value is the recovery of the written mean Dice, printed
        original, zero = dice["original"][region], dice["zero_ablation"][region]
        assert value == pytest.approx((dice["sae"][region] - zero) / (original - zero), rel=1e-9)
        assert f"{region} {value:.3f}" in printed
    assert set(result["alignment"]) == {"NCR", "ED", "ET"}
    assert result["alignment"]["ED"]["best_auroc"] > 0.5 and result["labelled_cases"] == 2


def test_extract_command_with_quotas(trained, workdir, capsys):
    cohort = write_cohort(workdir / "extract", 2, seed=33, prefix="ext")
    out = workdir / "extract-store"
    assert (
        main(
            [
                "sae",
                "extract",
                "--model",
                str(trained),
                "--layer",
                LAYER,
                "--data",
                str(cohort),
                "--out",
                str(out),
                "--quota",
                "ED=5",
                "--quota",
                "background=0",
                "--dtype",
                "float32",
            ]
        )
        == 0
    )
    assert f"wrote {out}" in capsys.readouterr().out
    store = ActivationStore(out)
    strata = torch.cat([store.read_shard(i)["stratum"] for i in range(len(store.shards))])
    assert 0 < int((strata == STRATA.index("ED")).sum()) <= 10 and not bool((strata == 0).any())
    assert store.manifest["dtype"] == "float32" and store.info["quotas"]["ED"] == 5
    assert (
        main(
            [
                "sae",
                "extract",
                "--model",
                str(trained),
                "--layer",
                LAYER,
                "--data",
                str(cohort),
                "--out",
                str(workdir / "x"),
                "--quota",
                "tumour=3",
            ]
        )
        == 2
    )
    assert "--quota 'tumour=3'" in capsys.readouterr().err


@pytest.mark.slow  # a real subprocess: importing torch and MONAI takes 10-30 s on the shared CPUs
def test_sae_of_another_model_is_refused_in_one_line(trained, heldout, workdir):
    other = save_tiny_model(workdir / "other-model")
    sae_dir = workdir / "identity"
    from MedSegLensLib.sae import save_sae

    save_sae(
        identity_sae(8, load_model(trained, device="cpu").fingerprint, LAYER),
        sae_dir,
        SAEInfo(load_model(trained, device="cpu").fingerprint, LAYER),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "MedSegLensLib",
            "sae",
            "eval",
            "--model",
            str(other),
            "--sae",
            str(sae_dir),
            "--data",
            str(heldout),
            "--out",
            str(workdir / "never.json"),
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "trained on another model" in lines[0] and str(other) in lines[0]
    assert "Traceback" not in result.stderr
    assert not (workdir / "never.json").exists()


def test_interrupted_fit_resumes_to_the_same_sae(trained, workdir):
    model = load_model(trained, device="cpu")
    cases = discover_cohort(write_cohort(workdir / "fit", 2, seed=40, prefix="fit"))
    store = extract_activations(model, LAYER, cases, workdir / "fit-store", seed=0)
    config = SAETrainingSettings(
        n_latents=16, k=3, kind="batchtopk", total_rows=40 * 256, batch_size=256, seed=4, checkpoint_every=10
    )
    plain, _ = fit_layer_sae(model, LAYER, store, workdir / "fit-plain", config, show_progress=False)

    def stop(progress):
        if progress.step == 25:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit_layer_sae(model, LAYER, store, workdir / "fit-resumed", config, progress=stop, show_progress=False)
    assert partial_dir(workdir / "fit-resumed").exists()
    with pytest.raises(Exception, match="--resume"):
        fit_layer_sae(model, LAYER, store, workdir / "fit-resumed", config, show_progress=False)
    resumed, summary = fit_layer_sae(
        model, LAYER, store, workdir / "fit-resumed", config, resume=True, show_progress=False
    )
    assert summary["steps"] == 40
    for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
        assert torch.equal(getattr(plain, name), getattr(resumed, name)), name
    assert load_sae(workdir / "fit-resumed").info.layer == LAYER
