"""`medseglens diff ...`: real stores, saved SAEs and models, outputs a person and a machine can read."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import subprocess_env
from diff_cases import axis_sae, directions_sae, save_planted_sae, write_planted_store
from worker_cases import save_tiny_model, write_case

from MedSegLensLib.cli.main import main
from MedSegLensLib.models import load_model
from MedSegLensLib.report import load_section
from MedSegLensLib.sae import SAEConfig, SAEInfo, SparseAutoencoder, save_sae

PNG = b"\x89PNG\r\n\x1a\n"
RATES = {
    0: lambda pop, s, rng: 0.5 if s == "WM" else 0.0,  # shared
    1: lambda pop, s, rng: 0.4 if (pop == "ssa" and s == "ED") else 0.0,  # SSA-specific
    2: lambda pop, s, rng: 0.1 * rng.uniform(0.5, 1.5),  # null
}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "MedSegLensLib", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )


@pytest.fixture(scope="module")
def population_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    store = write_planted_store(
        root / "store", 6, {"adult": 5, "pediatric": 5, "ssa": 5}, lambda p, s: 60, RATES, seed=4
    )
    sae_dir = save_planted_sae(axis_sae(6), root / "sae")
    (sae_dir / "latents.json").write_text(
        json.dumps(
            {
                "latents": [
                    {"latent": 0, "category": "healthy anatomy: WM", "description": "white matter everywhere"},
                    {"latent": 1, "category": "edema", "description": "edema of SSA cases"},
                ]
            }
        )
    )
    return root, store, sae_dir


@pytest.mark.slow
def test_diff_populations_writes_tables_figures_and_a_report(population_inputs):
    root, store, sae_dir = population_inputs
    out = root / "pop"
    result = run_cli(
        "diff",
        "populations",
        "--sae",
        str(sae_dir),
        "--store",
        str(store.path),
        "--out",
        str(out),
        "--bootstrap",
        "200",
        "--threads",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert "1 specific" in result.stdout and "ssa: 3 active, 1 enriched" in result.stdout
    record = json.loads((out / "populations.json").read_text())
    assert record["summary"]["latents"] == 6 and record["category"][:2] == ["shared", "specific"]
    assert record["specific"][0]["latent"] == 1 and record["specific"][0]["enriched_in"] == ["ssa"]
    assert record["specific"][0]["label"] == "edema: edema of SSA cases"
    assert record["cases"] == {"adult": 5, "pediatric": 5, "ssa": 5}
    with open(out / "latents.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 * 3
    ssa_edema = next(r for r in rows if r["latent"] == "1" and r["population"] == "ssa")
    assert ssa_edema["enriched"] == "True" and float(ssa_edema["q_enriched"]) < 0.05
    for name in ("backbone.png", "volcano.png", "specific.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    section = load_section(out)
    assert all(str(store.path) in figure.source for figure in section.figures)  # every figure names its data
    assert "diff populations" in section.command and "--bootstrap 200" in section.command
    page = (out / "report.html").read_text()
    assert 'src="./backbone.png"' in page and "Data: store " in page
    assert "edema of SSA cases" in page  # the label from latents.json names the specific latent


def test_existing_output_and_a_store_of_another_layer_are_refused(population_inputs, tmp_path, capsys):
    root, store, sae_dir = population_inputs
    (tmp_path / "taken").mkdir()
    code = main(
        ["diff", "populations", "--sae", str(sae_dir), "--store", str(store.path), "--out", str(tmp_path / "taken")]
    )
    assert code == 2 and "already exists" in capsys.readouterr().err
    other = save_planted_sae(axis_sae(6), tmp_path / "other_sae", layer="model.1")
    code = main(["diff", "populations", "--sae", str(other), "--store", str(store.path), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "layer 'model.0'" in err and str(store.path) in err
    assert not (tmp_path / "x").exists()


def test_diff_saes_matches_dictionaries_and_swaps_features(population_inputs, tmp_path, capsys):
    root, store, sae_dir = population_inputs
    rng = np.random.default_rng(0)
    directions = np.eye(6)[[3, 1, 0, 2, 5, 4]] + 0.02 * rng.normal(size=(6, 6))
    sae_b = save_planted_sae(directions_sae(directions), tmp_path / "sae_b")
    out = tmp_path / "saes"
    code = main(
        [
            "diff",
            "saes",
            "--a",
            str(sae_dir),
            "--b",
            str(sae_b),
            "--store-a",
            str(store.path),
            "--store-b",
            str(store.path),
            "--name-a",
            "pooled",
            "--name-b",
            "permuted",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    record = json.loads((out / "saes.json").read_text())
    s = record["summary"]
    # Only latents 0-2 ever fire in the store: the three dead ones are left out on both sides.
    assert s["alive_a"] == 3 and s["alive_b"] == 3 and s["matched_above_threshold"] == 3
    with open(out / "pairs.csv") as handle:
        pairs = {(int(r["latent_a"]), int(r["latent_b"])) for r in csv.DictReader(handle)}
    assert pairs == {(0, 2), (1, 1), (2, 3)}
    swap = record["swap"]["pooled->permuted"]
    assert swap["shared"]["surviving"] == swap["shared"]["latents"] == 3 and swap["fvu_swap"] < 0.05
    with open(out / "swap_pooled->permuted.csv") as handle:
        fired = [int(r["fired"]) for r in csv.DictReader(handle) if int(r["fired"]) >= 20]
    assert len(fired) == 3 and swap["shared"]["median_fired"] == np.median(fired)  # the frequency confound, shown
    assert (out / "swap.png").read_bytes().startswith(PNG) and (out / "matching.png").exists()
    assert "3 pairs with decoder cosine" in capsys.readouterr().out


def test_diff_saes_refuses_saes_of_different_layers(population_inputs, tmp_path, capsys):
    _, _, sae_dir = population_inputs
    other = save_planted_sae(axis_sae(6), tmp_path / "other", layer="model.2")
    code = main(["diff", "saes", "--a", str(sae_dir), "--b", str(other), "--out", str(tmp_path / "o")])
    assert code == 2 and "diff archs" in capsys.readouterr().err


@pytest.mark.slow
def test_diff_archs_matches_a_network_with_itself(tmp_path):
    """The same model and SAE on both sides: every alive latent pairs with itself, r = 1, significant."""
    cohort = tmp_path / "cohort"
    for number in range(3):
        write_case(cohort, np.random.default_rng(number), case_id=f"case-{number:03d}", with_labels=True)
    model_dir = save_tiny_model(tmp_path / "model")
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(4, 8, 2, "topk"))  # random TopK dictionary on the 4-channel layer model.0
    save_sae(sae, tmp_path / "sae", SAEInfo(load_model(model_dir, device="cpu").fingerprint, "model.0"))
    out = tmp_path / "archs"
    result = run_cli(
        "diff",
        "archs",
        "--model-a",
        str(model_dir),
        "--sae-a",
        str(tmp_path / "sae"),
        "--model-b",
        str(model_dir),
        "--sae-b",
        str(tmp_path / "sae"),
        "--data",
        str(cohort),
        "--out",
        str(out),
        "--permutations",
        "10",
        "--block-mm",
        "8",
        "--min-active",
        "5",
        "--threads",
        "1",
    )
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "archs.json").read_text())
    assert record["summary"]["cases"] == 3 and record["summary"]["pairs"] >= 4
    for pair in record["top_pairs"]:
        assert pair["latent_a"] == pair["latent_b"] and pair["correlation"] > 0.999 and pair["significant"]
    assert (out / "matching.png").read_bytes().startswith(PNG)
    assert "3 cases of" in load_section(out).figures[0].source
