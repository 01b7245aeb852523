"""A `parameterNodeWrapper` for tests that binds widgets by the same rules as 3D Slicer's, and refuses where it refuses.

The rules are written here from reading Slicer's source at the oldest version
MedSegLens supports (tag v5.10.0):
- `Base/Python/slicer/parameterNodeWrapper/guiConnectors.py`: which widget type
  (matched exactly by class, not by subclass) may bind to which field type, and
  the `RuntimeError`s of a connector that fits but is misconfigured (an
  unbounded slider, a combo box over a plain `str`, a range without bounds).
- `.../parameterNodeWrapper/wrapper.py`: `connectGui` collects the widgets whose
  `SlicerParameterName` property is set; a name that is not a field is a
  `ValueError`; a widget no connector fits is a `RuntimeError`; connecting
  writes every field's value into its widget.
- `.../parameterNodeWrapper/serializers.py` and `validators.py`: every
  assignment (and the default) is validated: `IsInstance` of the field's type
  (`int` accepted for `float`), `NotNone` except for MRML nodes, then the
  annotated `Choice`, `WithinRange`, `Minimum`, `Maximum`.
Parameter packs (`WidgetChildrenToParameterPackConnector`) are not modelled:
binding one raises here, so a module that starts using them must extend this.
"""

from __future__ import annotations

import enum
import pathlib
import types
import typing
from dataclasses import dataclass
from typing import Any

import slicer

SOURCE = "Slicer v5.10.0 Base/Python/slicer/parameterNodeWrapper/guiConnectors.py"


# -- annotations (the names a module imports from slicer.parameterNodeWrapper) ---------------


@dataclass(frozen=True)
class Choice:
    choices: tuple

    def __init__(self, choices):
        object.__setattr__(self, "choices", tuple(choices))

    def validate(self, value) -> None:
        if value not in self.choices:
            raise ValueError(f"Value is {value}, but must be in one of the following: {list(self.choices)}")


@dataclass(frozen=True)
class WithinRange:
    minimum: float
    maximum: float

    def validate(self, value) -> None:
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value must be within range [{self.minimum}, {self.maximum}], is {value}")


@dataclass(frozen=True)
class Minimum:
    minimum: float

    def validate(self, value) -> None:
        if value < self.minimum:
            raise ValueError(f"Value must be at least {self.minimum}, is {value}")


@dataclass(frozen=True)
class Maximum:
    maximum: float

    def validate(self, value) -> None:
        if value > self.maximum:
            raise ValueError(f"Value must be at most {self.maximum}, is {value}")


@dataclass(frozen=True)
class RangeBounds:
    minimum: float
    maximum: float

    def validate(self, value) -> None:
        if not (self.minimum <= value.minimum and value.maximum <= self.maximum):
            raise ValueError(f"Range {value} is outside [{self.minimum}, {self.maximum}]")


@dataclass(frozen=True)
class Default:
    value: Any


@dataclass(frozen=True)
class FloatRange:
    minimum: float = 0.0
    maximum: float = 0.0


class QColor:
    """Stands in for qt.QColor as a field type (the colour-picker connector)."""


VALIDATORS = (Choice, WithinRange, Minimum, Maximum, RangeBounds)
PATH_TYPES = (
    pathlib.Path,
    pathlib.PosixPath,
    pathlib.WindowsPath,
    pathlib.PurePath,
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
)


# -- types -----------------------------------------------------------------------------------


def split_annotations(datatype) -> tuple[Any, list]:
    """`Annotated[T, a, b]` -> (T, [a, b]); anything else -> (it, [])."""
    if typing.get_origin(datatype) is typing.Annotated:
        return typing.get_args(datatype)[0], list(datatype.__metadata__)
    return datatype, []


def _first(annotations: list, kind: type):
    return next((a for a in annotations if isinstance(a, kind)), None)


def node_types(datatype) -> tuple | None:
    """The MRML node classes of a node field (or of a Union of them), else None."""
    base, _ = split_annotations(datatype)
    members = typing.get_args(base) if typing.get_origin(base) in (typing.Union, types.UnionType) else (base,)
    members = tuple(m for m in members if m is not type(None))
    if members and all(isinstance(m, type) and issubclass(m, slicer.vtkMRMLNode) for m in members):
        return members
    return None


def default_of(datatype, declared=None):
    """The value a field starts with: declared, else `Default(...)`, else the serializer's default."""
    base, annotations = split_annotations(datatype)
    if declared is not None:
        return declared
    if _first(annotations, Default) is not None:
        return _first(annotations, Default).value
    if node_types(datatype):
        return None
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return next(iter(base))
    return base()


def validate(name: str, datatype, value) -> None:
    """Slicer's checks on every assignment: IsInstance (int for float), NotNone except nodes, then the annotations."""
    base, annotations = split_annotations(datatype)
    nodes = node_types(datatype)
    if nodes is not None:
        if value is not None and not isinstance(value, nodes):
            raise ValueError(f"{name}: {type(value).__name__} is not one of {[n.__name__ for n in nodes]}")
        return
    accepted = (int, float) if base is float else base
    if value is None or not isinstance(value, accepted):
        raise ValueError(f"{name}: {value!r} is not an instance of {base}")
    for annotation in annotations:
        if isinstance(annotation, VALIDATORS):
            annotation.validate(value)


# -- connectors: (widget classes, accepts(base type), check(widget class, base, annotations)) ---


def _bounded(annotations: list) -> bool:
    return _first(annotations, WithinRange) is not None or (
        _first(annotations, Minimum) is not None and _first(annotations, Maximum) is not None
    )


def _int_slider(widget_class, base, annotations):
    if widget_class == "QSlider" and not _bounded(annotations):
        raise RuntimeError("Cannot have a connection to QSlider where the int type is unbounded.")


def _float_slider(widget_class, base, annotations):
    if widget_class in ("ctkSliderWidget", "qMRMLSliderWidget") and not _bounded(annotations):
        raise RuntimeError("Cannot have a connection to ctkSliderWidget where the float types is unbounded.")


def _combo_choice(widget_class, base, annotations):
    if _first(annotations, Choice) is None:
        raise RuntimeError("ComboBoxToStringableConnector requires the Choice annotation to be used.")


def _range(widget_class, base, annotations):
    bounds = _first(annotations, RangeBounds)
    if bounds is None:
        raise RuntimeError(
            "Cannot have a connection to a range widget where the float is unbounded. Add a RangeBounds annotation."
        )
    if not bounds.minimum <= 0 <= bounds.maximum and _first(annotations, Default) is None:
        raise RuntimeError(
            "When providing RangeBounds that does not cover the value 0 you also need to provide "
            "a Default() value to initialize the GUI"
        )


def _is_enum(base) -> bool:
    return isinstance(base, type) and issubclass(base, enum.Enum)


def _no_check(widget_class, base, annotations):
    return None


# In Slicer's registration order: the first connector whose widget class and type fit is used.
CONNECTORS: dict[str, tuple[tuple[str, ...], typing.Callable[[Any], bool], typing.Callable]] = {
    "QCheckBoxToBoolConnector": (("QCheckBox", "ctkCheckBox"), lambda t: t is bool, _no_check),
    "QCheckablePushButtonToBoolConnector": (("QPushButton",), lambda t: t is bool, _no_check),
    "ctkCheckablePushButtonToBoolConnector": (("ctkCheckablePushButton",), lambda t: t is bool, _no_check),
    "QSliderOrSpinBoxToIntConnector": (("QSlider", "QSpinBox"), lambda t: t is int, _int_slider),
    "QDoubleSpinBoxCtkSliderWidgetToFloatIntConnector": (
        (
            "QDoubleSpinBox",
            "ctkSliderWidget",
            "qMRMLSliderWidget",
            "ctkDoubleSlider",
            "ctkDoubleSpinBox",
            "qMRMLSpinBox",
        ),
        lambda t: t in (float, int),
        _float_slider,
    ),
    "QComboBoxToStringableConnector": (
        ("QComboBox", "ctkComboBox"),
        lambda t: t in (int, float, str, bool),
        _combo_choice,
    ),
    "QComboBoxToEnumConnector": (("QComboBox", "ctkComboBox"), _is_enum, _no_check),
    "QLineEditToStrConnector": (("QLineEdit",), lambda t: t is str, _no_check),
    "QLabelToStrConnector": (("QLabel",), lambda t: t is str, _no_check),
    "QTextEditPlainTextToStrConnector": (("QTextEdit",), lambda t: t is str, _no_check),
    "ctkRangeWidgetToRangeConnector": (
        ("ctkRangeWidget", "ctkDoubleRangeSlider", "qMRMLRangeWidget"),
        lambda t: t is FloatRange,
        _range,
    ),
    "ctkPathLineEditToPathConnector": (("ctkPathLineEdit",), lambda t: t in PATH_TYPES, _no_check),
    "ctkDirectoryButtonToPathConnector": (("ctkDirectoryButton",), lambda t: t in PATH_TYPES, _no_check),
    "qMRMLNodeComboBoxToNodeConnector": (("qMRMLNodeComboBox",), lambda t: False, _no_check),  # see below
    "ctkColorPickerButtonToQColorConnector": (("ctkColorPickerButton",), lambda t: t is QColor, _no_check),
}


def connector_for(widget_class: str, datatype) -> str:
    """The name of the connector Slicer would use, or Slicer's RuntimeError (no fit, or a misconfigured fit)."""
    base, annotations = split_annotations(datatype)
    for name, (classes, accepts, check) in CONNECTORS.items():
        fits = node_types(datatype) is not None if name == "qMRMLNodeComboBoxToNodeConnector" else accepts(base)
        if widget_class in classes and fits:
            check(widget_class, base, annotations)
            return name
    raise RuntimeError(
        f"Unable to create GUI connector from datatype '{datatype}' to widget type '{widget_class}' (rules of {SOURCE})"
    )


# -- the wrapper -----------------------------------------------------------------------------


def parameterNodeWrapper(cls):  # noqa: N802 - Slicer's name
    """Typed, validated fields stored in the wrapped parameter node; `connectGui` binds by Slicer's rules."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {name: (datatype, default_of(datatype, getattr(cls, name, None))) for name, datatype in hints.items()}
    for name, (datatype, default) in fields.items():
        validate(name, datatype, default)

    class Wrapper:
        def __init__(self, node):
            object.__setattr__(self, "parameterNode", node)
            object.__setattr__(self, "_values", {})
            object.__setattr__(self, "_guis", {})
            for name, (_, default) in fields.items():
                setattr(self, name, default)

        def __getattr__(self, name):
            values = object.__getattribute__(self, "_values")
            if name in values:
                return values[name]
            raise AttributeError(name)

        def __setattr__(self, name, value):
            if name not in fields:
                raise AttributeError(f"{cls.__name__} has no parameter {name!r}")
            validate(name, fields[name][0], value)
            self._values[name] = value
            node = self.parameterNode
            if node_types(fields[name][0]) is not None:
                node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            else:
                node.SetParameter(name, str(value))
            for widgets in self._guis.values():
                if name in widgets:
                    widgets[name].show_value(value)

        @staticmethod
        def dataType(name):  # noqa: N802 - Slicer's name
            return fields[name][0]

        def connectGui(self, gui) -> int:  # noqa: N802 - Slicer's name
            """Bind every widget with a SlicerParameterName; raise where Slicer raises, before binding anything."""
            widgets = {
                w.property("SlicerParameterName"): w for w in vars(gui).values() if w.property("SlicerParameterName")
            }
            unknown = sorted(set(widgets) - set(fields))
            if unknown:
                raise ValueError(f"Cannot find a param with the given name: {unknown[0]}")
            connectors = {name: connector_for(w.class_name, fields[name][0]) for name, w in widgets.items()}
            for name, widget in widgets.items():
                widget.connector = connectors[name]
                widget.bind(fields[name][0], lambda value, name=name: setattr(self, name, value))
            for name, widget in widgets.items():
                widget.show_value(getattr(self, name))
            tag = len(self._guis) + 1
            self._guis[tag] = widgets
            return tag

        def disconnectGui(self, tag) -> None:  # noqa: N802 - Slicer's name
            for widget in self._guis.pop(tag, {}).values():
                widget.bind(None, None)

    Wrapper.__name__ = Wrapper.__qualname__ = cls.__name__
    Wrapper.fields = tuple(fields)
    return Wrapper
