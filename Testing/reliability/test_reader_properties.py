"""Property tests: whatever bytes sit in a case folder, a manifest, a model or an SAE folder, the readers either
succeed or raise a one-line MedSegLensError; never another exception. (read_volume alone: test_data_fuzz.py.)

Budgets are small and fixed (max_examples per test) so the file runs in well under a minute.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from datafiles import write_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from MedSegLensLib.data import read_case
from MedSegLensLib.data.cohort import read_manifest as read_cohort_manifest
from MedSegLensLib.errors import MedSegLensError
from MedSegLensLib.models import build_network, load_model, save_model, tiny_config
from MedSegLensLib.models.storage import read_weights
from MedSegLensLib.sae import SAEConfig, SAEInfo, SparseAutoencoder, load_sae, save_sae

BUDGET = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def only_expected_errors(call) -> None:
    try:
        call()
    except MedSegLensError as exc:
        assert "\n" not in str(exc)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Valid artefacts to mutate: a case folder, a model folder, an SAE folder."""
    root = tmp_path_factory.mktemp("seeds")
    case = write_case(root, "c", np.random.default_rng(0), shape=(8, 9, 10))["folder"]
    config = tiny_config("unet")
    torch.manual_seed(0)
    save_model(build_network(config), config, root / "model")
    sae = SparseAutoencoder(SAEConfig(4, 8, 2, "topk"))
    save_sae(sae, root / "sae", SAEInfo("f" * 64, "model.1"))
    return {"case": case, "model": root / "model", "sae": root / "sae"}


def _mutated(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    out = bytearray(data)
    for offset, value in edits:
        if out:
            out[offset % len(out)] = value
    return bytes(out[: max(0, len(out) - cut)])


EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6)


@BUDGET
@given(
    role=st.sampled_from(["t1n", "t1c", "t2w", "t2f", "seg"]),
    edits=EDITS,
    cut=st.integers(0, 3000),
    raw=st.none() | st.binary(max_size=600),
)
def test_case_folder_with_damaged_files(seeds, role, edits, cut, raw):
    with tempfile.TemporaryDirectory() as folder:
        case = Path(shutil.copytree(seeds["case"], Path(folder) / "c"))
        path = case / f"c-{role}.nii.gz"
        path.write_bytes(raw if raw is not None else _mutated(path.read_bytes(), edits, cut))
        only_expected_errors(lambda: read_case(case))


MANIFEST_TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.lists(
            st.sampled_from(
                [
                    "case_id",
                    "t1n",
                    "t1c",
                    "t2w",
                    "t2f",
                    "seg",
                    "population",
                    "c",
                    "../c",
                    "/etc/x",
                    "c/c-t1n.nii.gz",
                    "",
                    '"',
                    "\x00",
                    "Élodie",
                    "a,b",
                ]
            ),
            min_size=1,
            max_size=7,
        ),
        min_size=1,
        max_size=4,
    ).map(lambda rows: "\n".join(",".join(row) for row in rows)),
)


@BUDGET
@given(text=MANIFEST_TEXT, as_json=st.booleans(), tree=JSON)
def test_manifests_of_any_content(seeds, text, as_json, tree):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("manifest.json" if as_json else "manifest.csv")
        path.write_text(json.dumps(tree) if as_json else text, encoding="utf-8", errors="surrogatepass") if not any(
            0xD800 <= ord(c) <= 0xDFFF for c in text
        ) else path.write_bytes(b"\xff\xfe")
        only_expected_errors(lambda: read_cohort_manifest(path))


def _json_edits(document: dict, edits: list[tuple[list[str], object]]) -> dict:
    """Replace values at (nested) keys of a valid document by arbitrary JSON, or drop them (value None)."""
    out = json.loads(json.dumps(document))
    for path, value in edits:
        node = out
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[path[-1]] = value
    return out


MODEL_KEYS = st.sampled_from(
    [
        ["format"],
        ["format_version"],
        ["config"],
        ["config", "architecture"],
        ["config", "patch_size"],
        ["config", "hyper_parameters"],
        ["config", "labels"],
        ["config", "modalities"],
        ["config", "spacing"],
        ["config", "normalisation"],
        ["config", "sliding_window"],
        ["weights"],
        ["weights", "file"],
        ["provenance"],
    ]
)


@BUDGET
@given(edits=st.lists(st.tuples(MODEL_KEYS, JSON), min_size=1, max_size=3))
def test_model_json_with_arbitrary_values(seeds, edits):
    with tempfile.TemporaryDirectory() as folder:
        model = Path(shutil.copytree(seeds["model"], Path(folder) / "m"))
        manifest = json.loads((model / "model.json").read_text())
        (model / "model.json").write_text(json.dumps(_json_edits(manifest, edits)))
        only_expected_errors(lambda: load_model(model, device="cpu"))


@BUDGET
@given(edits=EDITS, cut=st.integers(0, 400), header=st.none() | JSON)
def test_safetensors_bytes_never_escape_as_other_errors(seeds, edits, cut, header):
    """The parser itself (hash check off): mutated files and arbitrary JSON headers."""
    data = (seeds["model"] / "weights.safetensors").read_bytes()
    if header is not None:
        encoded = json.dumps(header).encode()
        data = len(encoded).to_bytes(8, "little") + encoded + data[8 + int.from_bytes(data[:8], "little") :]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.safetensors"
        path.write_bytes(_mutated(data, edits, cut))
        only_expected_errors(lambda: read_weights(path))


SAE_KEYS = st.sampled_from(
    [
        "format",
        "version",
        "d_in",
        "n_latents",
        "k",
        "kind",
        "model_fingerprint",
        "layer",
        "threshold",
        "scaling",
        "training",
        "weights_sha256",
    ]
)


@BUDGET
@given(
    edits=st.lists(st.tuples(SAE_KEYS.map(lambda k: [k]), JSON), max_size=3),
    tensors=st.none()
    | st.dictionaries(
        st.sampled_from(["W_enc", "b_enc", "W_dec", "b_dec", "threshold", "x"]),
        st.lists(st.integers(0, 9), max_size=3),
        max_size=5,
    ),
)
def test_sae_sidecar_and_weights_of_any_content(seeds, edits, tensors):
    """Arbitrary sidecar values; when `tensors` is given, other weights whose hash the sidecar records."""
    from MedSegLensLib.fileio import sha256_file

    with tempfile.TemporaryDirectory() as folder:
        sae = Path(shutil.copytree(seeds["sae"], Path(folder) / "s"))
        sidecar = json.loads((sae / "sae.json").read_text())
        if tensors is not None:
            save_file({name: torch.zeros(shape) for name, shape in tensors.items()}, str(sae / "sae.safetensors"))
            sidecar["weights_sha256"] = sha256_file(sae / "sae.safetensors")
        (sae / "sae.json").write_text(json.dumps(_json_edits(sidecar, edits)))
        only_expected_errors(lambda: load_sae(sae))


def test_the_seeds_are_valid(seeds):
    """Mutations start from readable artefacts, so the properties above exercise the real parsing paths."""
    assert read_case(seeds["case"]).image.shape == (4, 8, 9, 10)
    assert load_model(seeds["model"], device="cpu").config.architecture == "unet"
    assert load_sae(seeds["sae"]).n_latents == 8
