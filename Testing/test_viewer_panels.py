"""The latent browser's rows and the steering panel's spec, from an `encode`-shaped result (no browser, no worker).

The state is a plain namespace standing in for trame's state (attribute reads and writes only).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from MedSegLensLib.errors import ParameterError
from MedSegLensLib.viewer.latent_panel import LatentBrowser
from MedSegLensLib.viewer.steering_panel import SteeringPanel
from MedSegLensLib.viewer.workspace import Overlay, WorkspaceCase

STEERING = {"modes": ["additive", "multiplicative", "clamp"], "neutral": {"additive": 0.0, "multiplicative": 1.0},
            "strength_ranges": {"additive": [-10.0, 10.0], "multiplicative": [0.0, 10.0], "clamp": [0.0, 10.0]},
            "regions": ["none", "tumour-margin", "mask"]}


def _row(latent, peak, category="", description=""):
    return {"latent": latent, "max": peak, "mean_active": peak / 2, "active_fraction": 0.1, "active_voxels": 10,
            "category": category, "confidence": 0.5 if category else None, "description": description,
            "specificity": "", "specificity_score": None}


RESULT = {"latents": [_row(3, 2.0, "edema", "peritumoural edema"), _row(7, 5.0, "background/other", "skull"),
                      _row(11, 1.0)], "steering": STEERING}
CASE = WorkspaceCase("c1", "adult", "cohorts/adult/c1", overlays=[
    Overlay("precomputed-3", "latents/x/c1/3.nii.gz", latent=3, category="edema"),
    Overlay("other-sae-7", "latents/y/c1/7.nii.gz", latent=7, sae="enc"),
    Overlay("unindexed", "latents/x/c1/u.nii.gz")])


@pytest.fixture
def latents():
    browser = LatentBrowser(SimpleNamespace(), sae_name="dec")
    browser.set_case(CASE)
    return browser


def test_before_the_analysis_only_precomputed_maps_are_listed(latents):
    assert [row["name"] for row in latents.state.latents] == ["precomputed-3", "other-sae-7", "unindexed"]
    assert latents.latent_of("latent-7") is None, "no worker map without an analysis"


def test_analysis_rows_use_precomputed_maps_of_the_same_sae_and_sort_and_filter(latents):
    latents.set_analysis(RESULT)
    names = [row["name"] for row in latents.state.latents]
    # strongest first; latent 3 has a map of this SAE, latent 7's map belongs to another SAE
    assert names == ["latent-7", "precomputed-3", "latent-11", "other-sae-7", "unindexed"]
    assert latents.latent_of("precomputed-3") == 3 and latents.latent_of("latent-11") == 11
    assert latents.latent_of("latent-99") is None and latents.latent_of("../latent-3") is None
    latents.sort_by(0)
    assert [row["latent"] for row in latents.state.latents][:3] == [3, 7, 11] and latents.state.latent_sort == 0
    latents.sort_by(0)
    assert [row["latent"] for row in latents.state.latents][:3] == [11, 7, 3] and latents.state.latent_descending
    latents.set_filter("edema")
    assert [row["name"] for row in latents.state.latents] == ["precomputed-3"]
    latents.set_filter("11")
    assert [row["name"] for row in latents.state.latents] == ["latent-11"]


@pytest.fixture
def panel():
    steering = SteeringPanel(SimpleNamespace())
    steering.set_analysis(RESULT)
    return steering


def test_neutral_strengths_steer_nothing_and_a_moved_slider_gives_the_spec(panel):
    s = panel.state
    assert s.steer_available and s.steer_modes == ["additive", "multiplicative"], "clamp has no neutral strength"
    assert panel.spec() is None
    s.steer_latents = [3, 7]
    assert panel.spec() is None, "all strengths at neutral"
    s.steer_strengths = {"3": 2.5}
    assert panel.spec() == {"latents": [3, 7], "strengths": [2.5, 0.0], "mode": "additive", "region": {"kind": "none"}}
    s.steer_region, s.steer_margin = "tumour-margin", 4
    assert panel.spec()["region"] == {"kind": "tumour-margin", "margin_mm": 4.0}
    s.steer_mode = "multiplicative"
    panel.on_mode()
    assert s.steer_range == [0.0, 10.0] and s.steer_neutral == 1.0 and s.steer_strengths == {}
    assert panel.spec() is None


@pytest.mark.parametrize("change, message", [
    (dict(steer_latents=[99], steer_strengths={"99": 1.0}), "not latents active"),
    (dict(steer_latents=["3"], steer_strengths={"3": 1.0}), "not latents active"),
    (dict(steer_latents=[3], steer_strengths={"3": math.nan}), "not a finite number"),
    (dict(steer_latents=[3], steer_strengths={"3": 11.0}), "must lie in"),
    (dict(steer_latents=[3], steer_strengths={"3": 1.0}, steer_region="tumour-margin", steer_margin=500), "margin"),
    (dict(steer_latents=[3], steer_strengths={"3": 1.0}, steer_region="mask"), "not one of"),
])
def test_bad_controls_from_the_page_are_refused(panel, change, message):
    for key, value in change.items():
        setattr(panel.state, key, value)
    with pytest.raises(ParameterError, match=message):
        panel.spec()


def test_the_readout_puts_dice_before_and_after_side_by_side(panel):
    panel.show_result({"dice": {"WT": 0.8, "ED": 0.7}, "dice_unsteered": {"WT": 0.6, "ED": 0.4}, "changed_voxels": 12,
                       "windows_recomputed": 2, "windows_total": 8, "seconds": 0.5})
    rows = {row["region"]: row for row in panel.state.dice_rows}
    assert (rows["ED"]["before"], rows["ED"]["after"]) == ("0.400", "0.700")
    assert rows["ET"]["after"] == "—" and "12 voxels changed" in panel.state.steer_summary
