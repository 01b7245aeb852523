"""Bad model and SAE folders, out-of-range steering requests and unwritable outputs through the real CLI.

Each parameter is one bad input, made from a real tiny model and a real tiny SAE by deleting, adding or
editing files. All command lines run in one fresh process (cli_batch.py: torch and MONAI load once).
Already covered elsewhere and not repeated here: a flipped weight bit (test_models_storage), a pickle
under the weights' name, latent >= n_latents, alpha outside [-10, 10] (test_steering_output).
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from reliability_support import build_corpus, check_refusal, run_corpus, snapshot
from steering_support import SEGFORMER_DECODER, UNET_DECODER, train_layer_sae, write_planted_case
from worker_cases import save_tiny_model

from MedSegLensLib.models import load_model

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]  # ~30 CLI runs with inference: about a minute
OTHER_LAYER = "model.1.submodule.0"


class Payload:
    """Unpickling it would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


def _model_variant(edit, *words):
    def build(base: dict, root: Path):
        model = root / "model"
        shutil.copytree(base["model"], model)
        named = edit(model)
        return ["layers", "--model", model], [named, *words]

    return build


def _sae_variant(edit, *words):
    def build(base: dict, root: Path):
        sae = root / "sae"
        shutil.copytree(base["sae"], sae)
        named = edit(sae)
        return _steer(base, root, sae=sae), [named, *words]

    return build


def _steer(base: dict, root: Path, *options, sae=None, model=None):
    return [
        "steer",
        "--model",
        model or base["model"],
        "--sae",
        sae or base["sae"],
        "--case",
        base["case"],
        "--out",
        root / "steered.nii.gz",
        *(options or ("--latent", "1", "--alpha", "1")),
    ]


def _steer_options(*options):
    def build(base: dict, root: Path):
        return _steer(base, root, *options), []

    return build


def _remove(name):
    def edit(folder: Path):
        (folder / name).unlink()
        return folder

    return edit


def _truncate(name):
    def edit(folder: Path):
        path = folder / name
        path.write_bytes(path.read_bytes()[:40])
        return path

    return edit


def _json(name, change):
    def edit(folder: Path):
        _edit_json(folder / name, change)
        return folder / name

    return edit


def _text(name, text):
    def edit(folder: Path):
        (folder / name).write_text(text)
        return folder / name

    return edit


def _weights_with_rehash(folder: Path):
    """Tensors renamed, and the recorded hash updated to match: integrity passes, compatibility must not."""
    from safetensors.torch import load_file, save_file

    from MedSegLensLib.fileio import sha256_file

    weights = folder / "weights.safetensors"
    tensors = {f"renamed.{k}": v for k, v in load_file(str(weights)).items()}
    save_file(tensors, str(weights))
    _edit_json(folder / "model.json", lambda d: {**d, "weights": {**d["weights"], "sha256": sha256_file(weights)}})
    return weights


def _declare_huge_sae(folder: Path):
    """Sizes that would need 16 GB: refused by comparing with the file's tensors before anything is allocated."""
    _edit_json(folder / "sae.json", lambda d: {**d, "n_latents": 10**9})
    return folder / "sae.safetensors"


def _sae_for_another_model(base: dict, root: Path):
    return _steer(base, root, model=base["other_model"]), [
        base["sae"],
        "trained on another model",
        "unet",
        base["other_model"],
    ]


def _segformer_sae_on_the_unet(command):
    """The SegFormer's SAE given with the U-Net: the message names both models, whatever the command."""

    def build(base: dict, root: Path):
        sae = base["segformer_sae"]
        argv = {
            "steer": _steer(base, root, sae=sae),
            "sae eval": [
                "sae",
                "eval",
                "--model",
                base["model"],
                "--sae",
                sae,
                "--data",
                base["cohort"],
                "--out",
                root / "eval.json",
            ],
            "latents": ["latents", "--model", base["model"], "--sae", sae, "--case", base["case"]],
            "interpret": [
                "interpret",
                "--model",
                base["model"],
                "--sae",
                sae,
                "--data",
                base["cohort"],
                "--out",
                root / "interp",
            ],
            "diff archs": [
                "diff",
                "archs",
                "--model-a",
                base["model"],
                "--sae-a",
                base["sae"],
                "--model-b",
                base["model"],
                "--sae-b",
                sae,
                "--data",
                base["cohort"],
                "--out",
                root / "d",
            ],
        }[command]
        return argv, [sae, "trained on another model", "(segformer ", "(unet ", base["model"]]

    return build


def _sae_train(named: str, *options):
    """`sae train` with bad settings: refused before the activation store or OUT.partial/ is created."""

    def build(base: dict, root: Path):
        return [
            "sae",
            "train",
            "--model",
            base["model"],
            "--data",
            base["cohort"],
            "--out",
            root / "sae-new",
            "--rows",
            "4096",
            "--batch-size",
            "512",
            *options,
        ], [named]

    return build


def _sae_for_another_layer(base: dict, root: Path):
    return _steer(base, root, "--latent", "1", "--alpha", "1", "--layer", OTHER_LAYER), [OTHER_LAYER]


def _train(named: str, *options):
    """`train` with bad settings: refused before any case is read or the model folder is made."""

    def build(base: dict, root: Path):
        return ["train", "--arch", "unet", "--data", base["cohort"], "--out", root / "model-new", *options], [named]

    return build


def _segment_into_read_only(base: dict, root: Path):
    (root / "locked").mkdir()
    out = root / "locked" / "seg.nii.gz"
    return ["segment", "--model", base["model"], "--case", base["case"], "--out", out], [out, "permission denied"]


def _segment_over_existing(base: dict, root: Path):
    out = root / "seg.nii.gz"
    out.write_bytes(b"the user's own segmentation")
    return ["segment", "--model", base["model"], "--case", base["case"], "--out", out], [out, "--overwrite"]


def _steer_over_existing_sidecar(base: dict, root: Path):
    """The provenance sidecar is an output too: an existing one is not replaced without --overwrite."""
    (root / "steered.provenance.json").write_text('{"the user": "kept this"}')
    return _steer(base, root), ["steered.provenance.json", "--overwrite"]


CORPUS = {
    "model: weights missing": _model_variant(_remove("weights.safetensors"), "not found"),
    "model: model.json missing": _model_variant(_remove("model.json"), "no model.json"),
    "model: model.json truncated": _model_variant(_truncate("model.json"), "not valid JSON"),
    "model: model.json is a list": _model_variant(_text("model.json", "[1, 2]"), "not a MedSegLens model"),
    "model: weights file named ../": _model_variant(
        _json("model.json", lambda d: {**d, "weights": {**d["weights"], "file": "../../weights.safetensors"}}),
        "plain file name",
    ),
    "model: architecture is code": _model_variant(
        _json("model.json", lambda d: {**d, "config": {**d["config"], "architecture": "__import__('os').system"}}),
        "architecture",
    ),
    "model: renamed tensors, hash updated": _model_variant(_weights_with_rehash, "another model"),
    "model: weights truncated": _model_variant(_truncate("weights.safetensors"), "sha256"),
    "SAE: sae.json missing": _sae_variant(_remove("sae.json"), "not an SAE folder"),
    "SAE: weights missing": _sae_variant(_remove("sae.safetensors"), "not an SAE folder"),
    "SAE: weights tampered": _sae_variant(_truncate("sae.safetensors"), "sha256"),
    "SAE: sae.json truncated": _sae_variant(_truncate("sae.json"), "unreadable"),
    "SAE: sae.json is a list": _sae_variant(_text("sae.json", "[]"), "sae.json"),
    "SAE: sae.json lacks its shape": _sae_variant(
        _json("sae.json", lambda d: {k: v for k, v in d.items() if k != "d_in"}), "sae.json"
    ),
    "SAE: sae.json with a negative latent count": _sae_variant(
        _json("sae.json", lambda d: {**d, "n_latents": -4}), "sae.json"
    ),
    "SAE: sae.json declares 10^9 latents": _sae_variant(_declare_huge_sae, "sae.json implies"),
    "SAE: trained on another model": _sae_for_another_model,
    "SAE: trained on another layer": _sae_for_another_layer,
    **{
        f"{command}: the SegFormer's SAE on the U-Net": _segformer_sae_on_the_unet(command)
        for command in ("steer", "sae eval", "latents", "interpret", "diff archs")
    },
    "sae train: negative latent count": _sae_train("latents=-5", "--latents", "-5"),
    "sae train: zero latents": _sae_train("latents=0", "--latents", "0"),
    "sae train: k above the latent count": _sae_train("k=9", "--latents", "8", "--k", "9"),
    "sae train: zero k": _sae_train("k=0", "--latents", "8", "--k", "0"),
    "sae train: negative learning rate": _sae_train("-0.1", "--learning-rate", "-0.1"),
    "train: zero epochs": _train("at least 1", "--epochs", "0"),
    "train: negative learning rate": _train("-0.001", "--learning-rate", "-0.001"),
    "interpret: negative card count": lambda base, root: (
        [
            "interpret",
            "--model",
            base["model"],
            "--sae",
            base["sae"],
            "--data",
            base["cohort"],
            "--out",
            root / "interp",
            "--cards",
            "-1",
        ],
        ["cards per category (-1)"],
    ),
    "steer: negative latent": _steer_options("--latent", "-1", "--alpha", "1"),
    "steer: latent 10^30": _steer_options("--latent", "1" + "0" * 30, "--alpha", "1"),
    "steer: repeated latent": _steer_options("--latent", "1,1", "--alpha", "1,1"),
    "steer: alpha nan": _steer_options("--latent", "1", "--alpha", "nan"),
    "steer: alpha inf": _steer_options("--latent", "1", "--alpha", "inf"),
    "steer: alpha 1e308 multiplicative": _steer_options(
        "--latent", "1", "--alpha", "1e308", "--mode", "multiplicative"
    ),
    "steer: clamp below zero": _steer_options("--latent", "1", "--alpha", "-0.5", "--mode", "clamp"),
    "steer: no latent": _steer_options("--latent", ",", "--alpha", "1"),
    "steer: huge margin": _steer_options("--latent", "1", "--alpha", "1", "--region", "tumour-margin:1e9"),
    "steer: mask is a device file": _steer_options("--latent", "1", "--alpha", "1", "--region", "mask:/dev/null"),
    "steer: existing provenance sidecar": _steer_over_existing_sidecar,
    "segment: read-only output folder": _segment_into_read_only,
    "segment: existing output without --overwrite": _segment_over_existing,
}


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    """A real tiny U-Net, a second U-Net, a tiny SegFormer, a labelled case and an SAE per U-Net and SegFormer."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("artefacts")
    model_dir = save_tiny_model(base / "model")
    torch.manual_seed(1)
    from MedSegLensLib.models import build_network, save_model, tiny_config

    save_model(build_network(tiny_config("unet")), tiny_config("unet"), base / "other-model")
    save_model(build_network(tiny_config("segformer")), tiny_config("segformer"), base / "segformer")
    case = write_planted_case(base / "cases", "case-a", seed=0)
    train_layer_sae(load_model(model_dir, device="cpu"), [case], UNET_DECODER, n_latents=8, k=2, folder=base / "sae")
    train_layer_sae(
        load_model(base / "segformer", device="cpu"),
        [case],
        SEGFORMER_DECODER,
        n_latents=8,
        k=2,
        folder=base / "segformer-sae",
    )
    return {
        "model": model_dir,
        "other_model": base / "other-model",
        "sae": base / "sae",
        "case": case,
        "cohort": base / "cases",
        "segformer_sae": base / "segformer-sae",
        "base": base,
    }


@pytest.fixture(scope="module")
def refusals(artefacts, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-artefacts")
    plans = build_corpus(CORPUS, root, artefacts)
    # the extra-files control: a model and an SAE folder with stray files (one a malicious pickle) still work
    extra = root / "extra"
    shutil.copytree(artefacts["model"], extra / "model")
    shutil.copytree(artefacts["sae"], extra / "sae")
    for folder in (extra / "model", extra / "sae"):
        (folder / "notes.txt").write_text("stray file")
        (folder / "weights.pt").write_bytes(pickle.dumps(Payload(root / "payload-ran")))
    control = _steer(artefacts, extra, sae=extra / "sae", model=extra / "model")
    shared = snapshot(artefacts["base"])
    locked = [plans[name][0] / "locked" for name in CORPUS if "read-only" in name]
    results, (control_run,) = run_corpus(plans, root, [control], locked)
    assert snapshot(artefacts["base"]) == shared, "a refused command changed the model, SAE or case"
    return results | {"control": (extra, control_run)}


@pytest.mark.parametrize("name", list(CORPUS))
def test_bad_artefact_or_request_is_refused_in_one_line_and_leaves_no_trace(refusals, name):
    check_refusal(refusals, name)


def test_stray_files_beside_the_weights_are_ignored_and_never_unpickled(refusals):
    extra, run = refusals["control"]
    assert run.returncode == 0, run.stderr
    assert (extra / "steered.nii.gz").exists() and (extra / "steered.provenance.json").exists()
    assert not (extra.parent / "payload-ran").exists()
