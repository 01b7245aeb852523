"""The latent browser's rows and the steering panel's spec, from an `encode`-shaped result (no browser, no worker).

The state is a plain namespace standing in for trame's state (attribute reads and writes only).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from MedSegLensLib.errors import ParameterError
from MedSegLensLib.latent_browser import SHORT_NAME_CHARS
from MedSegLensLib.viewer.latent_panel import LatentBrowser
from MedSegLensLib.viewer.steering_panel import STEP_FRACTION, SteeringPanel
from MedSegLensLib.viewer.workspace import Overlay, WorkspaceCase

STEERING = {
    "modes": ["additive", "multiplicative", "clamp"],
    "neutral": {"additive": 0.0, "multiplicative": 1.0},
    "strength_ranges": {"additive": [-10.0, 10.0], "multiplicative": [0.0, 10.0], "clamp": [0.0, 10.0]},
    "regions": ["none", "tumour-margin", "mask"],
    "default_margin_mm": 10.0,
}


def _row(latent, peak, category="", description=""):
    return {
        "latent": latent,
        "max": peak,
        "mean_active": peak / 2,
        "active_fraction": 0.1,
        "active_voxels": 10,
        "category": category,
        "confidence": 0.5 if category else None,
        "description": description,
        "specificity": "",
        "specificity_score": None,
    }


RESULT = {
    "latents": [_row(3, 2.0, "edema", "peritumoural edema"), _row(7, 5.0, "background/other", "skull"), _row(11, 1.0)],
    "steering": STEERING,
}
CASE = WorkspaceCase(
    "c1",
    "adult",
    "cohorts/adult/c1",
    overlays=[
        Overlay("precomputed-3", "latents/x/c1/3.nii.gz", latent=3, category="edema"),
        Overlay("other-sae-7", "latents/y/c1/7.nii.gz", latent=7, sae="enc"),
        Overlay("unindexed", "latents/x/c1/u.nii.gz"),
    ],
)


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
    # the default region: the predicted tumour plus the contract's default margin
    assert panel.spec() == {
        "latents": [3, 7],
        "strengths": [2.5, 0.0],
        "mode": "additive",
        "region": {"kind": "tumour-margin", "margin_mm": 10.0},
    }
    s.steer_region = "none"
    assert panel.spec()["region"] == {"kind": "none"}
    s.steer_region, s.steer_margin = "tumour-margin", 4
    assert panel.spec()["region"] == {"kind": "tumour-margin", "margin_mm": 4.0}
    s.steer_mode = "multiplicative"
    panel.on_mode()
    assert s.steer_range == [0.0, 10.0] and s.steer_neutral == 1.0 and s.steer_strengths == {}
    assert panel.spec() is None


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(steer_latents=[99], steer_strengths={"99": 1.0}), "not latents active"),
        (dict(steer_latents=["3"], steer_strengths={"3": 1.0}), "not latents active"),
        (dict(steer_latents=[3], steer_strengths={"3": math.nan}), "not a finite number"),
        (dict(steer_latents=[3], steer_strengths={"3": 11.0}), "must lie in"),
        (dict(steer_latents=[3], steer_strengths={"3": 1.0}, steer_region="tumour-margin", steer_margin=500), "margin"),
        (dict(steer_latents=[3], steer_strengths={"3": 1.0}, steer_region="mask"), "not one of"),
    ],
)
def test_bad_controls_from_the_page_are_refused(panel, change, message):
    for key, value in change.items():
        setattr(panel.state, key, value)
    with pytest.raises(ParameterError, match=message):
        panel.spec()


def test_the_readout_puts_dice_before_and_after_side_by_side(panel):
    panel.show_result(
        {
            "dice": {"WT": 0.8, "ED": 0.7},
            "dice_unsteered": {"WT": 0.6, "ED": 0.4},
            "changed_voxels": 12,
            "windows_recomputed": 2,
            "windows_total": 8,
            "seconds": 0.5,
            "spec": {"latents": [3], "strengths": [2.5]},
            "preview": True,
        },
        ["axial", "sagittal"],
    )
    rows = {row["region"]: row for row in panel.state.dice_rows}
    assert (rows["ED"]["before"], rows["ED"]["after"]) == ("0.400", "0.700")
    assert rows["ET"]["after"] == "—" and "12 voxels changed" in panel.state.steer_summary
    # a preview is labelled as one, and the page can tell which strengths the views show
    assert panel.state.steer_summary.startswith("preview") and panel.state.steer_shown["kind"] == "preview"
    assert panel.state.steer_shown["strengths"] == "[2.5]" and panel.state.steer_shown["views"] == "axial sagittal"


def test_strengths_are_shown_in_the_latents_own_units():
    typical = [0.0] * 16
    typical[3] = 0.5
    panel = SteeringPanel(SimpleNamespace(), typical)
    panel.set_analysis(RESULT)
    s = panel.state
    assert s.steer_step == STEP_FRACTION == 0.1, "one slider step is a tenth of the latent's typical activation"
    s.steer_latents, s.steer_strengths = [3, 11], {"3": 2.5}
    panel.publish_readout()
    # latent 3: 2.5 typical activations of 0.5 add 1.25; latent 11 has no typical activation on record
    assert s.steer_readout == {"3": "+2.50 × typical = +1.25", "11": "0.00 × typical"}
    s.steer_mode = "multiplicative"
    panel.on_mode()
    assert s.steer_readout == {"3": "×1.00 of its code", "11": "×1.00 of its code"}


def test_browser_lines_are_short_and_compare_here_with_typical_and_the_details_pane_reads_the_record():
    long = "an unusually long description of what this latent does in the tumour core; fires in 3 of 4 cases"
    result = {
        "latents": [_row(3, 2.0, "edema", long), _row(7, 5.0, "background/other", "skull"), _row(11, 1.0)],
        "steering": STEERING,
    }
    typical = [1.0] * 16
    typical[3] = 0.5  # latent 3 peaks at 4x its typical activation here, latent 7 at 5x, latent 11 at 1x
    record = {
        "index": 3,
        "description": long,
        "confidence": 0.62,
        "confidence_level": "high",
        "validated": True,
        "populations": {"adult": {"cases": 16, "fired": 9, "mean_active_ml": 12.3, "mean_peak": 2.1}},
        "top_cases": [{"case_id": "c9", "population": "adult", "peak": 3.2}],
        "future_field": [1, 2],
    }
    latents = LatentBrowser(SimpleNamespace(), "dec", typical, {3: record, 5: "not a record"})
    latents.set_case(CASE)
    latents.set_analysis(result)
    rows = {row["latent"]: row for row in latents.state.latents}
    assert len(rows[3]["short"]) <= SHORT_NAME_CHARS and rows[3]["short"].startswith("an unusually long")
    assert rows[3]["description"] == long and rows[3]["confidence"] == "0.50" and rows[3]["category"] == "edema"
    assert rows[3]["activation"] == "2 / 0.5 (×4.0)"
    assert [row["latent"] for row in latents.state.latents][:3] == [7, 3, 11], "sorted by here / typical"
    latents.set_filter("tumour core")  # the full description is searched, not only the short name
    assert [row["latent"] for row in latents.state.latents] == [3]
    latents.select(3)
    details = latents.state.latent_details
    assert details["description"] == long and details["card"] is None
    assert details["populations"] == [{"population": "adult", "fired": "9 / 16", "volume": "12.3 ml", "peak": "2.1"}]
    assert details["top_cases"] == [{"case_id": "c9", "population": "adult", "peak": "3.2"}]
    assert "confidence 0.62 (high)" in details["notes"] and "label held on held-out cases" in details["notes"]
    latents.select(11)  # no record: the row's own numbers only
    assert latents.state.latent_details["populations"] == [] and latents.state.latent_details["latent"] == 11


def test_column_indices_keep_their_meaning_for_the_cli_sort():
    from MedSegLensLib.cli.latent_commands import SORT_COLUMNS
    from MedSegLensLib.latent_browser import COLUMNS

    named = {name: COLUMNS[index] for name, index in SORT_COLUMNS.items()}
    assert named == {
        "latent": "Latent",
        "category": "Category",
        "activation": "Here / typical",
        "specificity": "Specificity",
    }


def test_the_details_pane_inlines_the_latents_card_when_there_is_one(tmp_path):
    from PIL import Image

    from MedSegLensLib.latent_browser import card_file

    labels = tmp_path / "interpret" / "latents.json"
    card = card_file(labels, 3)
    assert card == tmp_path / "interpret" / "cards" / "latent-00003.png"
    card.parent.mkdir(parents=True)
    Image.new("RGB", (4, 3), (200, 10, 10)).save(card)
    (card.parent / "latent-00007.png").write_text("not a png")
    latents = LatentBrowser(SimpleNamespace(), "dec", None, {}, lambda j: card_file(labels, j))
    latents.set_case(CASE)
    latents.set_analysis(RESULT)
    latents.select(3)
    assert latents.state.latent_details["card"].startswith("data:image/png;base64,")
    latents.select(7)
    assert latents.state.latent_details["card"] is None, "only PNG files are inlined"
    latents.select(None)
    assert latents.state.latent_details is None
