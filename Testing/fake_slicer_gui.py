"""FakeSlicerGui: stand-ins for desktop Slicer's Qt GUI, the one part that cannot exist here.

Only the GUI layer is faked: `qt` (a QTimer that the test fires by hand, table
items), `ctk` (the slider widgets made in code), `slicer.ScriptedLoadableModule`,
`slicer.parameterNodeWrapper` (the strict one of `slicer_parameter_rules`, which
binds and refuses by Slicer's own rules), and the `slicer.util` functions that
open windows or read .ui files. Widgets are made from the module's real .ui file
(one `FakeWidget` per named widget, with its properties and combo-box items), so
code that uses a widget the .ui lacks, or binds one Slicer would refuse, fails
here as it would in Slicer. The MRML scene, the scene code, the worker process
and the module's logic stay real.
"""

from __future__ import annotations

import enum
import importlib.util
import inspect
import os
import sys
import time
import types
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

import slicer
import slicer.util
import slicer_parameter_rules as rules

# The widget attribute a parameterNodeWrapper connector writes and reads, by widget class.
BOUND_ATTRIBUTE = {
    "QCheckBox": "checked",
    "ctkCheckBox": "checked",
    "QPushButton": "checked",
    "ctkCheckablePushButton": "checked",
    "QSlider": "value",
    "QSpinBox": "value",
    "QDoubleSpinBox": "value",
    "ctkSliderWidget": "value",
    "qMRMLSliderWidget": "value",
    "ctkDoubleSlider": "value",
    "ctkDoubleSpinBox": "value",
    "qMRMLSpinBox": "value",
    "QComboBox": "currentText",
    "ctkComboBox": "currentText",
    "QLineEdit": "text",
    "QLabel": "text",
    "QTextEdit": "plainText",
    "ctkPathLineEdit": "currentPath",
    "ctkDirectoryButton": "directory",
    "qMRMLNodeComboBox": "currentNode",
}


def _positional_count(slot, offered: int) -> int:
    parameters = inspect.signature(slot).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return offered
    return min(offered, sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters))


class FakeWidget:
    """Any Qt widget: remembers properties, signal connections and what was shown in it."""

    def __init__(self, name: str, class_name: str):
        self.name, self.class_name = name, class_name
        self.text, self.toolTip, self.enabled, self.directory = "", "", True, ""
        self.value, self.format, self.lines, self.rowCount, self.columnCount = 0, "%p%", [], 0, 0
        self.connections: dict[str, list] = {}
        self.cells: dict[tuple[int, int], object] = {}  # QTableWidget items and cell widgets
        self.current_row = -1
        self._header = None
        self.properties: dict[str, object] = {}
        self.items: list[str] = []  # QComboBox entries
        self.connector = None  # the parameterNodeWrapper connector bound to this widget
        self._datatype, self._setter = None, None

    def property(self, name):
        return self.properties.get(name)

    def bind(self, datatype, setter) -> None:
        """What Slicer's connector does on connect: items from Choice/Enum, range from the bounds (or unbounded)."""
        self._datatype, self._setter = datatype, setter
        if datatype is None:
            self.connector = None
            return
        base, annotations = rules.split_annotations(datatype)
        choice = next((a for a in annotations if isinstance(a, rules.Choice)), None)
        if self.class_name in ("QComboBox", "ctkComboBox"):
            self.items = [str(c) for c in choice.choices] if choice else [m.name for m in base]
        if BOUND_ATTRIBUTE.get(self.class_name) == "value" and base in (int, float):
            within = next((a for a in annotations if isinstance(a, rules.WithinRange)), None)
            low = next((a.minimum for a in annotations if isinstance(a, rules.Minimum)), float("-inf"))
            high = next((a.maximum for a in annotations if isinstance(a, rules.Maximum)), float("inf"))
            self.minimum, self.maximum = (within.minimum, within.maximum) if within else (low, high)

    def show_value(self, value) -> None:
        """The connector's write: a combo box refuses a value that is not one of its choices."""
        if self.class_name in ("QComboBox", "ctkComboBox"):
            shown = value.name if isinstance(value, enum.Enum) else str(value)
            if shown not in self.items:
                raise ValueError(f"Unable to find value {value} in choices {self.items}")
            value = shown
        object.__setattr__(self, BOUND_ATTRIBUTE[self.class_name], value)

    def user_sets(self, value) -> None:
        """A user edits the bound widget: the connector reads it into the parameter node."""
        if self._setter is None:
            raise AssertionError(f"{self.name} is not bound to a parameter")
        if self.class_name in ("QComboBox", "ctkComboBox"):
            base, annotations = rules.split_annotations(self._datatype)
            choice = next((a for a in annotations if isinstance(a, rules.Choice)), None)
            value = choice.choices[self.items.index(value)] if choice else base[value]
        self._setter(value)

    def connect(self, signal, slot):
        self.connections.setdefault(signal, []).append(slot)

    def emit(self, signal, *args):
        """Call the connected slots; like PythonQt, a slot that takes fewer arguments gets the first ones only."""
        for slot in self.connections.get(signal, []):
            slot(*args[: _positional_count(slot, len(args))])

    def setRange(self, low, high):
        self.range = (low, high)

    def setValue(self, value):
        self.value = value

    def setFormat(self, text):
        self.format = text

    def setText(self, text):
        self.text = text

    def clear(self):
        self.lines = []

    def appendPlainText(self, text):
        self.lines.append(text)

    def setMRMLScene(self, scene):
        self.scene = scene

    # QTableWidget
    def setRowCount(self, count):
        self.rowCount = count
        self.cells = {key: value for key, value in self.cells.items() if key[0] < count}

    def setItem(self, row, column, item):
        self.cells[(row, column)] = item

    def item(self, row, column):
        return self.cells.get((row, column))

    setCellWidget, cellWidget = setItem, item

    def removeRow(self, row):
        self.cells = {(r - (r > row), c): v for (r, c), v in self.cells.items() if r != row}
        self.rowCount -= 1

    def currentRow(self):
        return self.current_row

    def horizontalHeader(self):
        if self._header is None:
            self._header = FakeWidget(f"{self.name}.header", "QHeaderView")
        return self._header

    def row_texts(self):
        """What a table shows, row by row (test helper)."""
        return [
            [self.cells[(r, c)].text() for c in range(self.columnCount) if (r, c) in self.cells]
            for r in range(self.rowCount)
        ]


class FakeTableItem:
    def __init__(self, text=""):
        self._text = text

    def text(self):
        return self._text


class FakeLabel(FakeWidget):
    """qt.QLabel made in code."""

    def __init__(self, text: str = ""):
        super().__init__("label", "QLabel")
        self.text = text


class FakeSlider(FakeWidget):
    """ctk.ctkSliderWidget made in code; setting `value` emits valueChanged(double) like Qt."""

    def __init__(self):
        super().__init__("slider", "ctkSliderWidget")
        self.minimum, self.maximum, self.singleStep = 0.0, 99.0, 1.0

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if name == "value" and "connections" in self.__dict__:
            self.emit("valueChanged(double)", value)


class FakeTimer:
    def __init__(self):
        self.active, self.interval, self.slots = False, 0, []

    def setInterval(self, ms):
        self.interval = ms

    def connect(self, signal, slot):
        self.slots.append(slot)

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def isActive(self):
        return self.active

    def fire(self):
        for slot in self.slots:
            slot()


class FakeParent:
    """The module's Qt parent: holds title/help texts and whether the module is shown."""

    isEntered = True

    def __init__(self):
        self.widgets = []

    def layout(self):
        return self

    def addWidget(self, widget):
        self.widgets.append(widget)


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent or FakeParent()
        self.reloaded = False

    def setup(self):
        self.layout = self.parent.layout()

    def resourcePath(self, filename):
        module_file = sys.modules[type(self).__module__].__file__
        return os.path.join(os.path.dirname(module_file), "Resources", filename)

    def onReload(self):
        self.reloaded = True


class ScriptedLoadableModuleLogic:
    def getParameterNode(self):
        """A real parameter node in the real scene, as in Slicer (one per module, a singleton)."""
        scene = slicer.mrmlScene
        node = scene.GetSingletonNode("MedSegLens", "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag("MedSegLens")
            node.SetName("MedSegLens")
            node = scene.AddNode(node)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    """Slicer's base is a unittest.TestCase whose delayDisplay shows a message; here it is recorded."""

    def delayDisplay(self, message, msec=None):
        self.displayed = getattr(self, "displayed", []) + [message]


class FakeApp:
    """slicer.app: the version the module checks at start-up (the oldest supported unless a test says otherwise)."""

    def __init__(self, major: int = 5, minor: int = 10):
        self.majorVersion, self.minorVersion = major, minor

    def processEvents(self):  # noqa: N802 - Qt's name
        return None


class FakeDialogs:
    """What the module asked the user, and the answers the test gives."""

    def __init__(self):
        self.errors, self.questions, self.pip_installs, self.confirm = [], [], [], False

    def error_display(self, text, **kwargs):
        self.errors.append(text)

    def confirm_ok_cancel(self, text, **kwargs):
        self.questions.append(text)
        return self.confirm

    def pip_install(self, requirements, **kwargs):
        self.pip_installs.append(requirements)


class FakeSliceViews:
    """slicer.util.setSliceViewerLayers: sets the slice composite nodes (as Slicer does) and counts fits."""

    def __init__(self, scene):
        self.scene, self.fits = scene, 0

    def set_layers(
        self,
        background="keep-current",
        foreground="keep-current",
        label="keep-current",
        foregroundOpacity=None,
        labelOpacity=None,
        fit=False,
        rotateToVolumePlane=False,
    ):  # noqa: N803
        from MedSegLensLib.scene import show_in_slice_views

        layers = {"background": background, "foreground": foreground, "label": label}
        show_in_slice_views(
            self.scene, **{k: v for k, v in layers.items() if v != "keep-current"}, foreground_opacity=foregroundOpacity
        )
        self.fits += bool(fit)


def _property_value(element: ET.Element):
    value = element[0]
    if value.tag == "stringlist":
        return [s.text or "" for s in value]
    if value.tag == "bool":
        return value.text == "true"
    if value.tag in ("double", "number"):
        return float(value.text)
    return value.text or ""


def ui_widgets(ui_file: str) -> types.SimpleNamespace:
    """One FakeWidget per named widget of a .ui file, with its properties, table columns and combo-box items."""
    root = ET.parse(ui_file).getroot()
    widgets = {}
    for element in root.iter("widget"):
        widget = widgets[element.get("name")] = FakeWidget(element.get("name"), element.get("class"))
        widget.columnCount = len(element.findall("column"))
        widget.properties = {p.get("name"): _property_value(p) for p in element.findall("property")}
        widget.items = [item.find("property/string").text for item in element.findall("item")]
        for name in ("minimum", "maximum", "value", "singleStep"):
            if name in widget.properties:
                setattr(widget, name, widget.properties[name])
    return types.SimpleNamespace(**widgets)


def load_module(
    monkeypatch, module_file: Path, scene, version: tuple[int, int] = (5, 10)
) -> tuple[types.ModuleType, FakeDialogs]:
    """Import MedSegLens.py with the fake GUI installed and `slicer.mrmlScene` set to `scene`."""
    dialogs = FakeDialogs()
    qt = types.ModuleType("qt")
    qt.QTimer = FakeTimer
    qt.QTableWidgetItem = FakeTableItem
    qt.QLabel = lambda text="": FakeLabel(text)
    ctk = types.ModuleType("ctk")
    ctk.ctkSliderWidget = FakeSlider
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (
        ScriptedLoadableModule,
        ScriptedLoadableModuleWidget,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
    ):
        setattr(scripted, cls.__name__, cls)
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    for name in (
        "parameterNodeWrapper",
        "Choice",
        "WithinRange",
        "Minimum",
        "Maximum",
        "Default",
        "RangeBounds",
        "FloatRange",
    ):
        setattr(wrapper, name, getattr(rules, name))
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "ctk", ctk)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer, "app", FakeApp(*version), raising=False)
    monkeypatch.setattr(slicer.util, "loadUI", lambda path: FakeWidget("MedSegLens", "qMRMLWidget"), raising=False)
    monkeypatch.setattr(
        slicer.util,
        "childWidgetVariables",
        lambda widget: ui_widgets(str(module_file.parent / "Resources" / "UI" / "MedSegLens.ui")),
        raising=False,
    )
    monkeypatch.setattr(slicer.util, "startupEnvironment", lambda: dict(os.environ), raising=False)
    monkeypatch.setattr(slicer.util, "errorDisplay", dialogs.error_display, raising=False)
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", dialogs.confirm_ok_cancel, raising=False)
    monkeypatch.setattr(slicer.util, "pip_install", dialogs.pip_install, raising=False)
    dialogs.views = FakeSliceViews(scene)
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", dialogs.views.set_layers, raising=False)
    spec = importlib.util.spec_from_file_location("MedSegLens", module_file)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "MedSegLens", module)
    spec.loader.exec_module(module)
    return module, dialogs


MODULE_FILE = Path(__file__).resolve().parents[1] / "MedSegLens" / "MedSegLens.py"


def add_slice_views(scene) -> None:
    """The three slice views' composite nodes that Slicer's layout creates (singletons: they survive a close)."""
    for name in ("Red", "Yellow", "Green"):
        composite = slicer.vtkMRMLSliceCompositeNode()
        composite.SetLayoutName(name)
        composite.SetSingletonTag(name)
        scene.AddNode(composite)


def open_widget(monkeypatch, version: tuple[int, int] = (5, 10)):
    """The module's real widget, set up on a fresh headless slicer-core scene (call `cleanup()` when done)."""
    from MedSegLensLib.scene import create_headless_slicer

    scene = create_headless_slicer().scene
    add_slice_views(scene)
    module, dialogs = load_module(monkeypatch, MODULE_FILE, scene, version)
    module.MedSegLens(FakeParent())
    widget = module.MedSegLensWidget(FakeParent())
    widget.setup()
    widget.dialogs, widget.scene = dialogs, scene
    return widget


def run_timer_until_idle(widget, timeout: float = 300.0) -> None:
    """What Qt's event loop would do: fire the widget's timer until it stops itself."""
    deadline = time.monotonic() + timeout
    while widget.timer.isActive():
        assert time.monotonic() < deadline, "the widget's job did not finish"
        widget.timer.fire()
        time.sleep(widget.timer.interval / 1000)
