"""`interpret` outputs: tables, cards, gallery, figure, report section; atomic folders; the CLI with a real model."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from conftest import subprocess_env
from interpret_cases import (
    CSF,
    EDEMA,
    EDEMA_LATTICE,
    LATTICE,
    LEFT_WM,
    N_LATENTS,
    OUTSIDE,
    RIM,
    cohort_cases,
    make_cohorts,
    planted_encoder,
)

from MedSegLensLib.errors import OutputError
from MedSegLensLib.interpret import (
    ARTEFACT_CATEGORIES,
    CATEGORIES,
    InterpretSettings,
    LayerCodes,
    interpret,
    load_case_maps,
)
from MedSegLensLib.interpret.cards import card_panel
from MedSegLensLib.interpret.compare import compare_runs
from MedSegLensLib.report import assemble_report, load_section


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    return make_cohorts(tmp_path_factory.mktemp("cohorts"))


@pytest.fixture(scope="module")
def run(cohorts, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "planted"
    result = interpret(
        cohort_cases(cohorts),
        planted_encoder,
        N_LATENTS,
        out,
        source="planted latents",
        command="pytest",
        settings=InterpretSettings(cards_per_category=2),
        progress=False,
        run_name="planted",
    )
    return result, out


def test_latents_json_is_complete_and_matches_the_csv(run):
    result, out = run
    document = json.loads((out / "latents.json").read_text())
    assert document["format"] == "medseglens-latents" and document["version"] == 1
    assert document["cases"] == 9 and document["populations"] == {"adult": 4, "pediatric": 3, "healthy": 2}
    assert [r["index"] for r in document["latents"]] == list(range(N_LATENTS))
    assert sum(document["category_counts"].values()) == N_LATENTS - 1  # one planted latent never fires
    for record in document["latents"]:
        assert set(record) >= {
            "category",
            "confidence",
            "confidence_level",
            "description",
            "top_scores",
            "populations",
            "location",
            "top_cases",
            "target",
            "matched",
            "active",
        }
        assert record["category"] in CATEGORIES + ("inactive",)
    with open(out / "latents.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["category"] for r in rows] == [r["category"] for r in document["latents"]]
    assert [r["description"] for r in rows] == [r["description"] for r in document["latents"]]
    with open(out / "scores.csv", newline="") as handle:
        scores = list(csv.DictReader(handle))
    assert len(scores) == N_LATENTS * len(document["targets"])
    edema = next(r for r in scores if r["latent"] == str(EDEMA) and r["target"] == "ED")
    assert float(edema["dice"]) == pytest.approx(document["latents"][EDEMA]["top_scores"][0]["dice"], abs=1e-4)


def test_latents_json_reports_the_held_out_validation_and_the_artefacts(run):
    result, out = run
    document = json.loads((out / "latents.json").read_text())
    records = document["latents"]
    validation = document["validation"]
    assert validation["fit_cases"] + validation["held_out_cases"] == document["cases"] == 9
    assert validation["held_out_cases"] == len(validation["held_out_case_ids"]) == 4  # 2 adult, 1 pediatric, 1 healthy
    named = [r["index"] for r in records if r["validated"] and r["category"] not in ARTEFACT_CATEGORIES]
    # not the lattice, though it overlaps grey matter; the tumour drawn on every second voxel is (its peak < 3x)
    assert sorted(named) == sorted([EDEMA, RIM, CSF, LEFT_WM, EDEMA_LATTICE])
    assert validation["validated"] == len(named) and validation["active"] == N_LATENTS - 1
    assert validation["validated_share"] == round(len(named) / (N_LATENTS - 1), 4)
    artefacts = document["artefacts"]["counts"]
    assert artefacts == {kind: document["category_counts"][kind] for kind in ARTEFACT_CATEGORIES}
    assert artefacts["artefact: grid"] == 1 and records[LATTICE]["category"] == "artefact: grid"
    assert records[OUTSIDE]["category"] == "artefact: outside head"
    with open(out / "latents.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["validated"] for r in rows] == [str(r["validated"]) for r in records]
    assert [r["artefact"] for r in rows] == [(r["artefact"] or {}).get("kind") or "" for r in records]
    assert float(rows[EDEMA]["held_out_dice"]) == pytest.approx(records[EDEMA]["held_out"]["dice"], abs=1e-4)
    section = load_section(out)
    assert f"{validation['validated']} of {validation['active']} active latents" in " ".join(section.paragraphs)


def test_cards_pick_a_slice_inside_the_brain_and_report_activation_outside_it(cohorts):
    """A latent strongest on the volume's top axial slice (air) and weaker in one slice through the brain."""
    case, maps = load_case_maps(cohort_cases(cohorts)[0])
    middle = int(np.argmax(maps.brain.sum(axis=(0, 1))))
    heat = np.zeros(case.shape, np.float32)
    heat[:, :, -1] = 5.0
    heat[:, :, middle] = np.where(maps.brain[:, :, middle], 1.0, 0.0)
    panel = card_panel(case, LayerCodes.from_dense(heat[None], case.grid), 0, "t2f", maps.brain)
    assert panel.slice_index == middle and panel.peak == 1.0
    assert not panel.heat[~maps.brain[:, :, middle]].any()
    outside = 5.0 * case.shape[0] * case.shape[1]
    assert panel.outside_share == pytest.approx(outside / (outside + maps.brain[:, :, middle].sum()))


def test_cards_show_the_top_slices_and_the_gallery_links_them(run):
    result, out = run
    for latent in (EDEMA, RIM, CSF):
        assert latent in result.cards
        image = mpimg.imread(out / result.cards[latent])
        assert image.shape[0] > 400 and image.shape[1] > 600
        assert image[..., :3].std() > 0.1  # not blank: MRI, outlines and heatmaps drawn
    page = (out / "gallery.html").read_text()
    linked = re.findall(r'<img src="([^"]+)"', page)
    assert set(linked) == set(result.cards.values())
    assert all((out / path).is_file() for path in linked)
    for category in ("edema", "enhancing tumour", "healthy CSF"):
        assert f"<h2>{category}</h2>" in page
    assert "Latent 0</b>" in page and result.records[EDEMA]["description"] in page


def test_report_section_and_distribution_figure(run, tmp_path):
    result, out = run
    section = load_section(out)
    assert section.key == "interpret" and section.command == "pytest"
    assert {f.path for f in section.figures} >= {"categories.png", result.cards[EDEMA]}
    assert all(f.source == "planted latents" for f in section.figures)
    counts = {row[0]: row[1] for row in section.tables[0].rows}
    assert counts == result.counts and counts["edema"] >= 1
    page = assemble_report([out], tmp_path / "report.html", "test report")
    assert "Automatic interpretation of SAE latents" in page.read_text()
    assert mpimg.imread(out / "categories.png").shape[1] >= 800


def test_outputs_are_atomic_and_never_overwritten(cohorts, run, tmp_path):
    result, out = run
    with pytest.raises(OutputError):
        interpret(cohort_cases(cohorts), planted_encoder, N_LATENTS, out, progress=False)
    calls = []

    def failing(case):
        calls.append(case.case_id)
        if len(calls) == 3:
            raise RuntimeError("encoder crashed")
        return planted_encoder(case)

    target = tmp_path / "crashed"
    with pytest.raises(RuntimeError):
        interpret(cohort_cases(cohorts), failing, N_LATENTS, target, progress=False)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_compare_runs_side_by_side(run, tmp_path):
    result, out = run
    compared = compare_runs([out, out], tmp_path / "compare", names=["unet", "segformer"], command="pytest")
    section = load_section(compared)
    assert section.tables[0].columns == ["category", "unet latents", "unet %", "segformer latents", "segformer %"]
    edema_row = next(r for r in section.tables[0].rows if r[0] == "edema")
    assert edema_row[1] == edema_row[3] == result.counts["edema"]
    assert (compared / "categories.png").is_file()


@pytest.fixture(scope="module")
def tiny_model_and_sae(cohorts, tmp_path_factory):
    """A tiny U-Net (untrained, fixed seed) and an SAE trained on its first block over one cohort case."""
    from MedSegLensLib.models import build_network, load_model, save_model, tiny_config
    from MedSegLensLib.sae import SAEInfo, SAETrainingSettings, TensorRows, layer_features, save_sae, train_sae

    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    config = tiny_config("unet")
    save_model(build_network(config), config, root / "model")
    model = load_model(root / "model", device="cpu")
    case = cohort_cases(cohorts)[0].load()
    fmap = layer_features(model, case, "model.0")
    sae, summary = train_sae(
        TensorRows(fmap.rows()),
        SAETrainingSettings(n_latents=24, k=3, total_rows=40 * 512, batch_size=512, seed=0),
        show_progress=False,
    )
    save_sae(sae, root / "sae", SAEInfo(model.fingerprint, "model.0", training=summary))
    save_sae(sae, root / "foreign-sae", SAEInfo("0" * 64, "model.0", training=summary))
    return root


def _cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "MedSegLensLib", *arguments],
        capture_output=True,
        text=True,
        env={**subprocess_env(), "OMP_NUM_THREADS": "1"},
        timeout=600,
    )


@pytest.fixture(scope="module")
def cli_run(cohorts, tiny_model_and_sae, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "interpretation"
    done = _cli(
        "interpret",
        "--model",
        str(tiny_model_and_sae / "model"),
        "--sae",
        str(tiny_model_and_sae / "sae"),
        "--data",
        *map(str, cohorts),
        "--out",
        str(out),
        "--cards",
        "1",
    )
    return done, out


@pytest.mark.slow
def test_cli_interprets_a_real_model_and_sae(cohorts, tiny_model_and_sae, cli_run):
    done, out = cli_run
    assert done.returncode == 0, done.stderr
    assert "scoring latents" in done.stderr and "latents active on 9 cases" in done.stdout
    document = json.loads((out / "latents.json").read_text())
    assert len(document["latents"]) == 24 and document["sae"]["layer"] == "model.0"
    assert document["model"]["architecture"] == "unet"
    active = [r for r in document["latents"] if r["active"]]
    assert active and all(r["description"] for r in active)
    cards = list((out / "cards").glob("latent-*.png"))
    assert 1 <= len(cards) <= len(CATEGORIES)
    again = _cli(
        "interpret",
        "--model",
        str(tiny_model_and_sae / "model"),
        "--sae",
        str(tiny_model_and_sae / "sae"),
        "--data",
        str(cohorts[0]),
        "--out",
        str(out),
    )
    assert again.returncode != 0 and again.stderr.strip().count("\n") == 0 and "--overwrite" in again.stderr


@pytest.mark.slow
def test_python_api_writes_what_the_cli_writes(cohorts, tiny_model_and_sae, cli_run, tmp_path):
    """`interpret_sae` (the demo pipeline's call) gives the CLI's latents, cards and section, single-threaded."""
    from MedSegLensLib.interpret import interpret_sae

    _, cli_out = cli_run
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI subprocess (OMP_NUM_THREADS=1): same floating-point sums
    try:
        folder = interpret_sae(
            tiny_model_and_sae / "model",
            tiny_model_and_sae / "sae",
            cohorts,
            tmp_path / "api",
            cards=1,
            device="cpu",
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    assert folder == tmp_path / "api"
    ours, theirs = (json.loads((f / "latents.json").read_text()) for f in (folder, cli_out))
    assert ours["latents"] == theirs["latents"] and ours["model"] == theirs["model"] and ours["sae"] == theirs["sae"]
    assert sorted(p.name for p in (folder / "cards").iterdir()) == sorted(p.name for p in (cli_out / "cards").iterdir())
    assert load_section(folder).command.startswith("interpret_sae(")


def test_cli_refuses_an_sae_of_another_model_in_one_line(cohorts, tiny_model_and_sae, tmp_path):
    done = _cli(
        "interpret",
        "--model",
        str(tiny_model_and_sae / "model"),
        "--sae",
        str(tiny_model_and_sae / "foreign-sae"),
        "--data",
        str(cohorts[0]),
        "--out",
        str(tmp_path / "x"),
    )
    assert done.returncode == 2 and done.stderr.startswith("medseglens interpret: error:")
    assert done.stderr.strip().count("\n") == 0 and "trained on another model" in done.stderr
    assert not (tmp_path / "x").exists()


def test_cases_without_tissue_or_atlas_are_scored_on_the_tumour_targets_only(tmp_path):
    """Real BraTS-like cases: a label map but no tissue map or atlas."""
    from worker_cases import write_case

    from MedSegLensLib.data import discover_cohort
    from MedSegLensLib.interpret import LayerCodes

    for index in range(2):
        write_case(tmp_path / "cohort", np.random.default_rng(index), case_id=f"case-{index}", with_labels=True)
    cases = discover_cohort(tmp_path / "cohort")

    def edema_only(case):
        return LayerCodes.from_dense((case.label == 2)[None].astype(np.float32), case.grid)

    result = interpret(cases, edema_only, 1, tmp_path / "out", progress=False)
    assert result.table.targets.names == ("NCR", "ED", "ET", "boundary")
    record = result.records[0]
    assert record["category"] == "edema" and record["location"] is None
    assert record["description"].endswith("fires in 2 of 2 unknown cases.")


def test_a_case_without_a_label_map_is_refused_in_one_line(tmp_path):
    from worker_cases import write_case

    from MedSegLensLib.data import discover_cohort
    from MedSegLensLib.errors import InputError

    write_case(tmp_path / "cohort", np.random.default_rng(0), case_id="unlabelled")
    with pytest.raises(InputError, match="unlabelled has no label map"):
        interpret(discover_cohort(tmp_path / "cohort"), planted_encoder, N_LATENTS, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
