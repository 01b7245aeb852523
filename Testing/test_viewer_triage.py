"""The viewer's triage view without a browser: the worklist named by workspace.json, the case order, the case
the viewer opens, the "Why" panel's content, and the worker's uncertainty map (softmax entropy) checked against
the model's own probabilities."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from slicer_support import assets_fixture, write_test_worklist
from viewer_support import CASES, write_fixture_workspace

from MedSegLensLib.errors import InputError
from MedSegLensLib.viewer.triage_panel import TriagePanel, default_case, load_worklist, triage_order
from MedSegLensLib.viewer.workspace import read_workspace, write_workspace_index

ADULT, SSA = (spec.case_id for spec in CASES)  # index order; SSA is the failure case


def _with_worklist(root, rows, sae_sha256=""):
    """The fixture workspace with a worklist under triage/ named in workspace.json."""
    workspace = write_fixture_workspace(root)
    write_test_worklist(root / "triage", rows, sae_sha256=sae_sha256)
    workspace.triage = "triage"
    write_workspace_index(workspace)
    return read_workspace(root)


def test_ranked_cases_come_first_in_rank_order_and_the_top_ranked_case_opens(tmp_path):
    # the adult case (not a failure, first in the index) is rank 1: neither the index order nor the old default
    workspace = _with_worklist(tmp_path, [{"case_id": ADULT, "risk": 0.9}, {"case_id": SSA, "risk": 0.2}])
    assert json.loads((tmp_path / "workspace.json").read_text())["triage"] == "triage"
    worklist = load_worklist(workspace)
    assert [case.case_id for case in triage_order(workspace.cases, worklist)] == [ADULT, SSA]
    assert default_case(workspace, worklist).case_id == ADULT
    assert default_case(workspace, None).case_id == SSA, "without a worklist: the first failure, as before"

    workspace = _with_worklist(tmp_path / "b", [{"case_id": SSA, "risk": 0.7}, {"case_id": "elsewhere", "risk": 0.9}])
    worklist = load_worklist(workspace)
    assert [case.case_id for case in triage_order(workspace.cases, worklist)] == [SSA, ADULT], "unranked last"
    assert default_case(workspace, worklist).case_id == SSA


def test_a_worklist_outside_the_workspace_or_broken_is_one_line(tmp_path):
    workspace = write_fixture_workspace(tmp_path)
    index = json.loads((tmp_path / "workspace.json").read_text())
    (tmp_path / "workspace.json").write_text(json.dumps({**index, "triage": "../elsewhere"}))
    with pytest.raises(InputError, match="triage worklist '../elsewhere' points outside the workspace"):
        read_workspace(tmp_path)
    (tmp_path / "triage").mkdir()
    (tmp_path / "triage" / "worklist.json").write_text("{not json")
    (tmp_path / "workspace.json").write_text(json.dumps({**index, "triage": "triage"}))
    with pytest.raises(InputError, match="cannot read the triage worklist") as error:
        load_worklist(read_workspace(tmp_path))
    assert "\n" not in str(error.value)
    assert load_worklist(workspace) is None


def test_the_why_panel_lists_rank_risk_baselines_and_top_latents(tmp_path):
    top = [{"latent": 7, "excess": 0.25, "description": "a blob"}, {"latent": 3, "excess": 0.1, "description": ""}]
    rows = [{"case_id": SSA, "risk": 0.8, "top_latents": top, "failure": True}, {"case_id": ADULT, "risk": 0.1}]
    workspace = _with_worklist(tmp_path, rows, sae_sha256="a" * 64)
    state = SimpleNamespace()
    panel = TriagePanel(state, load_worklist(workspace))
    assert state.triage_on and state.why is None
    assert panel.case_cells(workspace.case(SSA)) == {"rank": 1, "risk": "0.800"}
    panel.show(workspace.case(SSA), lambda latent: f"map-{latent}")
    why = state.why
    assert (why["rank"], why["of"], why["risk"], why["failure"]) == (1, 2, "0.800", "failed")
    assert [(t["latent"], t["name"], t["excess"], t["description"]) for t in why["latents"]] == [
        (7, "map-7", "0.25", "a blob"),
        (3, "map-3", "0.1", "no description"),
    ]
    # a latent the worklist does not describe takes the workspace interpretation's description
    panel.show(workspace.case(SSA), lambda latent: f"map-{latent}", {3: "edema rim"}.get)
    assert [t["description"] for t in state.why["latents"]] == ["a blob", "edema rim"]
    assert [b["label"] for b in why["baselines"]][:4] == [
        "softmax entropy",
        "1 − max probability",
        "TTA volume CV",
        "volume outlier",
    ]
    panel.check_sae("a" * 64)
    assert state.why_clickable and state.why_note == ""
    panel.check_sae("b" * 64)
    assert not state.why_clickable and "another SAE (aaaaaaaaaaaa)" in state.why_note

    assert TriagePanel(SimpleNamespace(), None).case_cells(workspace.case(SSA)) == {"rank": None, "risk": None}


assets = assets_fixture("latents")


def test_the_uncertainty_map_is_the_softmax_entropy_inside_the_brain_from_the_cached_pass(worker, assets):
    from MedSegLensLib.data import read_case, read_volume
    from MedSegLensLib.models import load_model

    params = {"model": str(assets.model), "sae": str(assets.sae), "case": str(assets.flipped)}
    worker.run("encode", params)
    misses = worker.run("ping")["cache_misses"]
    data = worker.run("uncertainty_map", params)
    assert worker.run("ping")["cache_misses"] == misses, "the map comes from the cached pass: no model run"

    case = read_case(assets.flipped)
    probabilities = load_model(assets.model, device="cpu").predict(case, probabilities=True).probabilities
    entropy = -(probabilities * np.log(np.clip(probabilities, 1e-30, None))).sum(0)
    brain = np.any(case.image != 0, axis=0)
    volume = read_volume(data["map"])
    np.testing.assert_allclose(volume.grid.affine, case.source_grid.affine)
    np.testing.assert_allclose(volume.array, case.to_source(np.where(brain, entropy, 0.0)), atol=1e-4)
    assert data["max_entropy"] == pytest.approx(np.log(probabilities.shape[0]))
    assert 0 < data["peak"] <= data["max_entropy"] + 1e-6 and data["units"] == "softmax entropy (nats)"
