"""The module's parameter class binds to its real .ui by Slicer's rules; the .ui agrees with the steering contract.

Rules: Slicer v5.10.0 (the oldest supported), `Base/Python/slicer/parameterNodeWrapper/guiConnectors.py`
(which widget binds which annotated type, and the RuntimeErrors of a misconfigured connector), `wrapper.py`
(`connectGui`: widgets by their `SlicerParameterName`, an unknown name is a ValueError) and `validators.py`
(Choice, WithinRange, Minimum, Maximum on every assignment); written out in `Testing/slicer_parameter_rules.py`.
"""

from __future__ import annotations

import enum
import pathlib
import typing
from types import SimpleNamespace
from typing import Annotated

import pytest

slicer = pytest.importorskip("slicer")  # slicer-core

import slicer_parameter_rules as rules  # noqa: E402
from fake_slicer_gui import MODULE_FILE, FakeWidget, open_widget, ui_widgets  # noqa: E402
from slicer_parameter_rules import (  # noqa: E402
    Choice,
    Default,
    FloatRange,
    Maximum,
    Minimum,
    QColor,
    RangeBounds,
    WithinRange,
    connector_for,
)

from MedSegLensLib.slicer_module.overlay import STYLES  # noqa: E402
from MedSegLensLib.steering_contract import (  # noqa: E402
    DEFAULT_MARGIN_MM,
    MAX_MARGIN_MM,
    MIN_MARGIN_MM,
    MODES,
    REGION_KINDS,
)

pytestmark = pytest.mark.scene


class Colour(enum.Enum):
    RED = 1
    GREEN = 2


Volume = slicer.vtkMRMLScalarVolumeNode
# connector -> (widget class, a type it accepts, a type it refuses): one of each per connector of the rules' file.
CASES = {
    "QCheckBoxToBoolConnector": ("QCheckBox", bool, int),
    "QCheckablePushButtonToBoolConnector": ("QPushButton", bool, str),
    "ctkCheckablePushButtonToBoolConnector": ("ctkCheckablePushButton", bool, float),
    "QSliderOrSpinBoxToIntConnector": ("QSlider", Annotated[int, WithinRange(0, 9)], int),  # unbounded slider
    "QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector": (
        "ctkSliderWidget",
        Annotated[float, Minimum(0.0), Maximum(1.0)],
        Annotated[float, Minimum(0.0)],
    ),
    "QComboBoxToStringableConnector": ("QComboBox", Annotated[str, Choice(["a", "b"])], str),  # str needs Choice
    "QComboBoxToEnumConnector": ("ctkComboBox", Colour, pathlib.Path),
    "QLineEditToStrConnector": ("QLineEdit", str, int),
    "QLabelToStrConnector": ("QLabel", str, bool),
    "QTextEditPlainTextToStrConnector": ("QTextEdit", str, pathlib.Path),
    "ctkRangeWidgetToRangeConnector": (
        "ctkRangeWidget",
        Annotated[FloatRange, RangeBounds(0, 5)],
        Annotated[FloatRange, RangeBounds(1, 5)],
    ),
    "ctkPathLineEditToPathConnector": ("ctkPathLineEdit", pathlib.Path, str),
    "ctkDirectoryButtonToPathConnector": ("ctkDirectoryButton", pathlib.PurePath, str),
    "qMRMLNodeComboBoxToNodeConnector": (
        "qMRMLNodeComboBox",
        typing.Union[Volume, slicer.vtkMRMLSegmentationNode],  # noqa: UP007 - the Union spelling is the case here
        str,
    ),
    "ctkColorPickerButtonToQColorConnector": ("ctkColorPickerButton", QColor, str),
}


# The 16 connector classes of guiConnectors.py at v5.10.0. Parameter packs are not modelled: the stand-in has no
# `parameterPack`, so a module that imports it fails to load here and this file must be extended first.
SLICER_CONNECTORS = {*CASES, "WidgetChildrenToParameterPackConnector"}


def test_every_connector_of_slicers_file_is_covered_here():
    assert len(SLICER_CONNECTORS) == 16
    assert set(CASES) == set(rules.CONNECTORS) == SLICER_CONNECTORS - {"WidgetChildrenToParameterPackConnector"}
    assert not hasattr(rules, "parameterPack")


@pytest.mark.parametrize("connector", sorted(CASES))
def test_each_connector_accepts_its_binding_and_refuses_another(connector):
    widget_class, accepted, refused = CASES[connector]
    assert connector_for(widget_class, accepted) == connector
    with pytest.raises(RuntimeError):
        connector_for(widget_class, refused)


def test_slicers_specific_refusals_and_their_fixes():
    """The two refusals that broke the panel, with Slicer's messages, and the annotations that fix them."""
    with pytest.raises(RuntimeError, match="requires the Choice annotation"):
        connector_for("QComboBox", str)
    with pytest.raises(RuntimeError, match="ctkSliderWidget where the float types is unbounded"):
        connector_for("ctkSliderWidget", float)
    assert connector_for("QDoubleSpinBox", float) == "QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector"
    assert connector_for("ctkSliderWidget", Annotated[float, WithinRange(0, 1)]).endswith("FloatIntConnector")
    assert connector_for("QSpinBox", int) == "QSliderOrSpinBoxToIntConnector"  # a spin box may be unbounded
    with pytest.raises(RuntimeError, match="also need to provide a Default"):
        connector_for("ctkRangeWidget", Annotated[FloatRange, RangeBounds(1, 5)])
    assert connector_for("ctkRangeWidget", Annotated[FloatRange, RangeBounds(1, 5), Default(FloatRange(1, 2))])
    with pytest.raises(RuntimeError, match="Unable to create GUI connector"):
        connector_for("QCheckBox", Annotated[str, Choice(["a"])])  # the widget class decides, then the type
    assert connector_for("qMRMLNodeComboBox", Volume | slicer.vtkMRMLSegmentationNode)  # X | Y unions too (5.10)


def _wrap(namespace: dict):
    cls = type("Params", (), namespace)
    return rules.parameterNodeWrapper(cls)


def test_binding_refuses_before_anything_is_bound():
    """A plain `str` on a combo box (the module's old overlayStyle) stops connectGui, as in Slicer."""
    Params = _wrap({"__annotations__": {"style": str, "ok": bool}, "style": "volume"})
    combo, box = FakeWidget("combo", "QComboBox"), FakeWidget("box", "QCheckBox")
    combo.properties, box.properties = {"SlicerParameterName": "style"}, {"SlicerParameterName": "ok"}
    params = Params(slicer.vtkMRMLScriptedModuleNode())
    with pytest.raises(RuntimeError, match="Choice"):
        params.connectGui(SimpleNamespace(box=box, combo=combo))
    assert box.connector is None and combo.connector is None
    unknown = FakeWidget("stray", "QLineEdit")
    unknown.properties = {"SlicerParameterName": "missing"}
    with pytest.raises(ValueError, match="Cannot find a param"):
        params.connectGui(SimpleNamespace(unknown=unknown))


def test_assignments_are_validated_like_slicers_serializers():
    Params = _wrap(
        {
            "__annotations__": {
                "mode": Annotated[str, Choice(MODES)],
                "margin": Annotated[float, WithinRange(MIN_MARGIN_MM, MAX_MARGIN_MM)],
                "folder": pathlib.Path,
                "volume": Volume,
            },
            "mode": MODES[0],
        }
    )
    params = Params(slicer.vtkMRMLScriptedModuleNode())
    params.margin = 3  # an int is accepted for a float
    for name, bad in (
        ("mode", "sideways"),
        ("margin", MAX_MARGIN_MM + 1),
        ("folder", "/tmp"),
        ("folder", None),
        ("volume", slicer.vtkMRMLSegmentationNode()),
    ):
        with pytest.raises(ValueError):
            setattr(params, name, bad)
    with pytest.raises(ValueError):  # a default outside its Choice is refused when the class is made
        _wrap({"__annotations__": {"mode": Annotated[str, Choice(MODES)]}})


@pytest.fixture
def widget(monkeypatch):
    instance = open_widget(monkeypatch)
    yield instance
    instance.cleanup()


def test_the_modules_parameter_class_binds_every_widget_of_its_ui(widget):
    """Every widget with a SlicerParameterName is bound; combo boxes list the steering contract's choices."""
    named = {
        w.property("SlicerParameterName"): w for w in vars(widget.ui).values() if w.property("SlicerParameterName")
    }
    assert set(named) == set(type(widget._parameterNode).fields)
    assert all(w.connector for w in named.values()), {n: w.connector for n, w in named.items()}
    assert widget.ui.steeringModeComboBox.items == list(MODES)
    assert widget.ui.steeringRegionComboBox.items == list(REGION_KINDS)
    assert widget.ui.overlayStyleComboBox.items == list(STYLES)
    margin = widget.ui.steeringMarginSpinBox
    assert (margin.minimum, margin.maximum, margin.value) == (MIN_MARGIN_MM, MAX_MARGIN_MM, DEFAULT_MARGIN_MM)
    # The overlay threshold is in the shown latent's activation units (its range is set per latent), so it is not a
    # parameter: a saved value would mean nothing for the next latent.
    assert widget.ui.latentThresholdSlider.property("SlicerParameterName") is None
    assert widget.ui.latentThresholdSlider.connector is None


def test_the_default_steering_region_is_the_predicted_tumour_plus_the_contracts_margin(widget):
    """As in the viewer (issue 18 item 6): by default, steering acts on the predicted tumour grown by the margin."""
    state = widget._parameterNode
    assert (state.steeringRegion, state.steeringMarginMm) == ("tumour-margin", DEFAULT_MARGIN_MM)
    assert state.parameterNode.GetParameter("steeringRegion") == "tumour-margin"
    assert widget.ui.steeringRegionComboBox.currentText == "tumour-margin"  # what the bound combo box shows
    assert widget.ui.steeringMarginSpinBox.value == DEFAULT_MARGIN_MM
    choice = next(a for a in state.dataType("steeringRegion").__metadata__ if isinstance(a, rules.Choice))
    within = next(a for a in state.dataType("steeringMarginMm").__metadata__ if isinstance(a, rules.WithinRange))
    assert tuple(choice.choices) == REGION_KINDS and (within.minimum, within.maximum) == (MIN_MARGIN_MM, MAX_MARGIN_MM)


def test_a_user_edit_reaches_the_parameter_node_and_out_of_range_is_refused(widget):
    widget.ui.steeringModeComboBox.user_sets("multiplicative")
    assert widget._parameterNode.steeringMode == "multiplicative"
    assert widget._parameterNode.parameterNode.GetParameter("steeringMode") == "multiplicative"
    with pytest.raises(ValueError):
        widget.ui.steeringMarginSpinBox.user_sets(MAX_MARGIN_MM + 0.5)


def test_the_ui_file_itself_agrees_with_the_steering_contract():
    """The .ui's own items and ranges (what Qt shows before binding) are the contract's."""
    ui = ui_widgets(str(MODULE_FILE.parent / "Resources" / "UI" / "MedSegLens.ui"))
    assert ui.steeringModeComboBox.items == list(MODES)
    assert ui.steeringRegionComboBox.items == list(REGION_KINDS)
    assert ui.overlayStyleComboBox.items == list(STYLES)
    margin = ui.steeringMarginSpinBox.properties
    assert (margin.get("minimum", 0.0), margin["maximum"], margin["value"]) == (
        MIN_MARGIN_MM,
        MAX_MARGIN_MM,
        DEFAULT_MARGIN_MM,
    )
    region = ui.steeringRegionComboBox
    assert region.items[int(region.properties["currentIndex"])] == "tumour-margin"  # shown before binding too
    assert "SlicerParameterName" not in ui.latentThresholdSlider.properties and hasattr(ui, "latentLegendLabel")


def test_the_old_parameter_class_is_refused_by_the_real_ui():
    """The fields as they were (plain `str` on combo boxes, an unbounded float on a ctkSliderWidget) bind nothing."""
    node_types = {
        "t1n": slicer.vtkMRMLScalarVolumeNode,
        "t1c": slicer.vtkMRMLScalarVolumeNode,
        "t2w": slicer.vtkMRMLScalarVolumeNode,
        "t2f": slicer.vtkMRMLScalarVolumeNode,
        "referenceSegmentation": slicer.vtkMRMLSegmentationNode,
        "steeringRegionSegmentation": slicer.vtkMRMLSegmentationNode,
    }
    old = {
        **node_types,
        "modelFolder": pathlib.Path,
        "saeFolder": pathlib.Path,
        "latentThreshold": float,
        "overlayStyle": str,
        "steeringMode": str,
        "steeringRegion": str,
        "steeringMarginMm": float,
        "previewEnabled": bool,
        "triageFolder": pathlib.Path,  # added with the Triage section; binds as in the current class
    }
    defaults = {
        "latentThreshold": 0.5,
        "overlayStyle": "volume",
        "steeringMode": "additive",
        "steeringRegion": "none",
        "steeringMarginMm": 10.0,
        "previewEnabled": True,
    }
    params = _wrap({"__annotations__": old, **defaults})(slicer.vtkMRMLScriptedModuleNode())
    ui = ui_widgets(str(MODULE_FILE.parent / "Resources" / "UI" / "MedSegLens.ui"))
    with pytest.raises(RuntimeError, match="Choice annotation|float types is unbounded"):
        params.connectGui(ui)
    assert all(w.connector is None for w in vars(ui).values())
