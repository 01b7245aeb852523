"""What an imported model's inputs and outputs mean, from the names its authors gave them.

Input channels are named in nnU-Net's dataset.json ("T1", "T1ce", "Flair") or
a bundle's metadata ("T1c", "FLAIR"); outputs are labels ("edema", "NCR") or
overlapping regions ("whole tumor", "tumor core", "enhancing tumor"). These
names are matched to MedSegLens's modalities and BraTS labels; a model whose
outputs do not name exactly the three BraTS labels or regions keeps its own
labels (the user can name them with --output-names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ...data import LABEL_NAMES, MODALITIES
from ...errors import ParameterError

_MODALITY_WORDS = {
    "t1n": ("t1n", "t1", "t1w", "t1 native", "native t1", "t1 pre", "t1 precontrast"),
    "t1c": ("t1c", "t1ce", "t1gd", "t1 gd", "t1 ce", "t1 contrast", "t1 post", "t1 postcontrast", "t1wce", "t1 c"),
    "t2w": ("t2w", "t2", "t2 weighted"),
    "t2f": ("t2f", "flair", "t2 flair", "t2flair"),
}
_LABEL_WORDS = {
    1: (
        "ncr",
        "net",
        "ncr net",
        "necrosis",
        "necrotic",
        "necrotic core",
        "non enhancing tumor",
        "non enhancing",
        "necrotic tumor core",
        "necrotic and non enhancing tumor core",
        "nonenhancing tumor",
    ),
    2: (
        "ed",
        "edema",
        "snfh",
        "peritumoral edema",
        "surrounding non enhancing flair hyperintensity",
        "whole tumor edema",
    ),
    3: ("et", "enhancing", "enhancing tumor", "enhancing tumor core", "gd enhancing tumor"),
}
_REGION_WORDS = {
    "WT": ("wt", "whole tumor", "whole", "complete tumor"),
    "TC": ("tc", "tumor core", "core"),
    "ET": ("et", "enhancing tumor", "enhancing"),
}
# A voxel's BraTS label is its innermost region: paint WT, then TC, then ET.
REGION_PAINT = (("WT", 2), ("TC", 1), ("ET", 3))
BRATS_LABELS: tuple[tuple[int, str], ...] = ((0, "background"), *sorted(LABEL_NAMES.items()))


def normalise_name(name: str) -> str:
    text = str(name).lower().replace("tumour", "tumor").replace("oedema", "edema")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def _match(name: str, table: dict) -> object | None:
    key = normalise_name(name)
    return next((value for value, words in table.items() if key in words), None)


def modality_of(name: str) -> str | None:
    return _match(name, _MODALITY_WORDS)


def channel_modalities(names: list[str], source: str) -> tuple[str, ...]:
    """The MedSegLens modality of each input channel, from its name; an unknown name is a one-line error."""
    found = [modality_of(n) for n in names]
    if None in found or len(set(found)) != len(found):
        raise ParameterError(
            f"{source}: cannot tell which modality each input channel is ({', '.join(map(str, names))}); "
            f"give them in channel order with --channels (names from {', '.join(MODALITIES)})"
        )
    return tuple(found)


def parse_channels(text: str, expected: int, source: str) -> tuple[str, ...]:
    """The user's --channels list (e.g. 't1c,t1n,t2w,t2f'), checked against the model's input count."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if len(names) != expected or any(n not in MODALITIES for n in names) or len(set(names)) != len(names):
        raise ParameterError(
            f"--channels '{text}': {source} takes {expected} input channel(s); give that many distinct names "
            f"from {', '.join(MODALITIES)}"
        )
    return tuple(names)


@dataclass
class OutputMeaning:
    """How a model's output becomes a label map.

    kind: 'classes' (softmax/argmax over channels) or 'regions' (sigmoid per channel, overlapping).
    names: the model's names of its foreground outputs (label values ascending, or region channels in order).
    values: for classes, the model's label value of each output channel.
    labels: (value, name) of the label map MedSegLens produces; BraTS labels when `brats` is True.
    lookup: model label value (classes) or region index (regions) -> label value produced.
    """

    kind: str
    names: list[str]
    values: list[int]
    labels: tuple[tuple[int, str], ...]
    lookup: dict[int, int]
    brats: bool

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "names": self.names,
            "values": self.values,
            "brats": self.brats,
            "labels": [{"value": v, "name": n} for v, n in self.labels],
            "lookup": {str(k): v for k, v in self.lookup.items()},
        }

    def table(self) -> np.ndarray:
        """Lookup array: model label value (or paint value) -> label value produced."""
        table = np.zeros(max(self.lookup) + 1, dtype=np.uint8)
        for value, label in self.lookup.items():
            table[value] = label
        return table

    @classmethod
    def from_json(cls, data: dict) -> OutputMeaning:
        return cls(
            data["kind"],
            list(data["names"]),
            [int(v) for v in data["values"]],
            tuple((int(i["value"]), str(i["name"])) for i in data["labels"]),
            {int(k): int(v) for k, v in data["lookup"].items()},
            bool(data["brats"]),
        )


def class_outputs(values_and_names: list[tuple[int, str]], renamed: list[str] | None = None) -> OutputMeaning:
    """Softmax outputs: label value and name per channel (background first)."""
    values = [v for v, _ in values_and_names]
    names = [n for _, n in values_and_names[1:]]
    if renamed is not None:
        names = _renamed(names, renamed)
    brats_values = [_match(n, _LABEL_WORDS) for n in names]
    if sorted(v for v in brats_values if v is not None) == [1, 2, 3] and len(names) == 3:
        lookup = {values[0]: 0, **{v: b for v, b in zip(values[1:], brats_values)}}
        return OutputMeaning("classes", names, values, BRATS_LABELS, lookup, True)
    own = ((0, "background"), *((v, n) for v, n in zip(values[1:], names)))
    return OutputMeaning("classes", names, values, own, {v: v for v in values}, False)


def region_outputs(
    region_names: list[str], paint_values: list[int] | None = None, renamed: list[str] | None = None
) -> OutputMeaning:
    """Sigmoid region outputs in channel order; `paint_values` are the values the source paints them with."""
    names = _renamed(region_names, renamed) if renamed is not None else list(region_names)
    regions = [_match(n, _REGION_WORDS) for n in names]
    paint = list(paint_values) if paint_values is not None else list(range(1, len(names) + 1))
    if sorted(r for r in regions if r is not None) == ["ET", "TC", "WT"] and len(names) == 3:
        brats = dict(REGION_PAINT)
        lookup = {0: 0, **{p: brats[r] for p, r in zip(paint, regions)}}
        return OutputMeaning("regions", names, paint, BRATS_LABELS, lookup, True)
    own = ((0, "background"), *((p, n) for p, n in zip(paint, names)))
    return OutputMeaning("regions", names, paint, own, {0: 0, **{p: p for p in paint}}, False)


def _renamed(names: list[str], renamed: list[str]) -> list[str]:
    if len(renamed) != len(names):
        raise ParameterError(
            f"--output-names: the model has {len(names)} foreground output(s) ({', '.join(names)}); "
            f"give one name for each, in that order"
        )
    return list(renamed)


def region_paint_order(meaning: OutputMeaning) -> list[int]:
    """Channel indices in painting order (outermost region first) for a BraTS-mapped region model."""
    if not meaning.brats:
        return list(range(len(meaning.names)))
    regions = [_match(n, _REGION_WORDS) for n in meaning.names]
    return [regions.index(r) for r, _ in REGION_PAINT]
