"""One steering contract: its limits reach every client (CLI, worker, viewer, Slicer), and it imports no torch."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from MedSegLensLib.errors import ParameterError
from MedSegLensLib.slicer_module.steering import SteeringRequest
from MedSegLensLib.steering_contract import (
    DEFAULT_MARGIN_MM,
    MAX_MARGIN_MM,
    MIN_MARGIN_MM,
    MODES,
    REGION_KINDS,
    STRENGTH_RANGES,
    RegionSpec,
    SteeringSpec,
    steering_options,
)
from MedSegLensLib.viewer.steering_panel import SteeringPanel


def test_the_contract_imports_without_torch():
    code = (
        "import sys; import MedSegLensLib.steering_contract, MedSegLensLib.viewer.steering_panel, "
        "MedSegLensLib.slicer_module.steering; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_the_workers_options_are_the_contracts():
    options = steering_options()
    assert options["modes"] == list(MODES) and options["regions"] == list(REGION_KINDS)
    assert options["strength_ranges"] == {m: list(r) for m, r in STRENGTH_RANGES.items()}
    assert options["margin_mm"] == [MIN_MARGIN_MM, MAX_MARGIN_MM]


def _panel(margin: float) -> SteeringPanel:
    panel = SteeringPanel(SimpleNamespace())
    panel.set_analysis({"steering": steering_options(), "latents": [{"latent": 3, "category": "edema"}]})
    panel.state.steer_latents, panel.state.steer_strengths = [3], {"3": 1.0}
    panel.state.steer_region, panel.state.steer_margin = "tumour-margin", margin
    return panel


@pytest.mark.parametrize("client", ["cli", "viewer", "slicer"])
def test_every_client_accepts_the_largest_margin_and_refuses_beyond_it(client):
    """The viewer once stopped at 50 mm while the spec and the .ui allowed 100: each client now asks the contract."""
    build = {
        "cli": lambda margin: SteeringSpec(
            (3,), (1.0,), "additive", RegionSpec.parse(f"tumour-margin:{margin:g}")
        ).to_json(),
        "viewer": lambda margin: _panel(margin).spec(),
        "slicer": lambda margin: SteeringRequest((3,), (1.0,), "additive", "tumour-margin", margin).spec(),
    }[client]
    expected = {
        "latents": [3],
        "strengths": [1.0],
        "mode": "additive",
        "region": {"kind": "tumour-margin", "margin_mm": MAX_MARGIN_MM},
    }
    assert build(MAX_MARGIN_MM) == expected
    with pytest.raises(ParameterError, match="margin"):
        build(MAX_MARGIN_MM + 1)


def test_the_viewer_slider_and_default_come_from_the_contract():
    state = _panel(DEFAULT_MARGIN_MM).state
    assert state.steer_max_margin == MAX_MARGIN_MM
    panel = SteeringPanel(SimpleNamespace())
    assert panel.state.steer_margin == DEFAULT_MARGIN_MM


def test_the_slicer_request_refuses_what_the_contract_refuses():
    for bad in (dict(mode="sideways"), dict(strengths=(11.0,)), dict(region="elsewhere")):
        kwargs = {"latents": (3,), "strengths": (1.0,), **bad}
        with pytest.raises(ParameterError):
            SteeringRequest(**kwargs)
    with pytest.raises(ParameterError, match="Region mask"):
        SteeringRequest((3,), (1.0,), region="mask")
    assert SteeringRequest((3,), (1.0,), region="mask", region_node=object()).spec("m.nii.gz")["region"] == {
        "kind": "mask",
        "path": "m.nii.gz",
    }
