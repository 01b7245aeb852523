"""A coarse location atlas (hemisphere x lobe/depth) built from the CerebrA atlas.

CerebrA labels cortical grey matter and deep structures but not white matter.
Every unlabelled brain voxel takes the structure of its nearest labelled voxel;
voxels that are white matter beside a cortical lobe become that lobe's white
matter, beside a ventricle periventricular white matter. The result answers
"where is this?" at the resolution a report needs (e.g. "left temporal white
matter"), and is what later work uses to say where a latent fires.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError

HEMISPHERE_REGIONS: tuple[str, ...] = (
    "frontal cortex",
    "frontal white matter",
    "parietal cortex",
    "parietal white matter",
    "temporal cortex",
    "temporal white matter",
    "occipital cortex",
    "occipital white matter",
    "limbic and insular",
    "periventricular white matter",
    "deep grey nuclei",
    "cerebellum",
)
MIDLINE_REGIONS: tuple[str, ...] = ("brainstem", "ventricles")


def _label_table() -> dict[int, str]:
    table = {0: "outside brain"}
    for offset, side in ((0, "left"), (len(HEMISPHERE_REGIONS), "right")):
        for number, region in enumerate(HEMISPHERE_REGIONS, start=1):
            table[offset + number] = f"{side} {region}"
    for number, region in enumerate(MIDLINE_REGIONS, start=2 * len(HEMISPHERE_REGIONS) + 1):
        table[number] = region
    return table


ATLAS_LABELS: dict[int, str] = _label_table()
_CODE = {name: code for code, name in ATLAS_LABELS.items()}

# CerebrA structure -> coarse group ("lobe" groups get a cortex / white-matter split).
_LOBES = ("frontal", "parietal", "temporal", "occipital")
_GROUP_OF_STRUCTURE = {
    "frontal": (
        "Caudal Middle Frontal",
        "Lateral Orbitofrontal",
        "Medial Orbitofrontal",
        "Paracentral",
        "Pars Opercularis",
        "Pars Orbitalis",
        "Pars Triangularis",
        "Precentral",
        "Rostral Middle Frontal",
        "Superior Frontal",
    ),
    "parietal": ("Inferior Parietal", "Postcentral", "Precuneus", "Superior Parietal", "Supramarginal"),
    "temporal": ("Fusiform", "Inferior temporal", "Middle Temporal", "Superior Temporal", "Transverse Temporal"),
    "occipital": ("Cuneus", "Lateral Occipital", "Lingual", "Pericalcarine"),
    "limbic": (
        "Caudal Anterior Cingulate",
        "Isthmus Cingulate",
        "Posterior Cingulate",
        "Rostral Anterior Cingulate",
        "Insula",
        "Entorhinal",
        "Parahippocampal",
        "Hippocampus",
        "Amygdala",
    ),
    "deep": (
        "Thalamus",
        "Caudate",
        "Putamen",
        "Pallidum",
        "Accumbens Area",
        "Ventral Diencephalon",
        "Basal Forebrain",
        "Optic Chiasm",
    ),
    "cerebellum": (
        "Cerebellum Gray Matter",
        "Cerebellum White Matter",
        "Vermal lobules I-V",
        "Vermal lobules VI-VII",
        "Vermal lobules VIII-X",
    ),
    "brainstem": ("Brainstem",),
    "ventricles": ("Third Ventricle", "Fourth Ventricle", "Lateral Ventricle", "Inferior Lateral Ventricle"),
}
_GROUPS = tuple(_GROUP_OF_STRUCTURE)

# Atlas labels used to place tumours, by placement group.
PLACEMENT_GROUPS: dict[str, tuple[int, ...]] = {
    lobe: tuple(_CODE[f"{side} {lobe} {depth}"] for side in ("left", "right") for depth in ("cortex", "white matter"))
    for lobe in _LOBES
}
PLACEMENT_GROUPS["periventricular"] = (
    _CODE["left periventricular white matter"],
    _CODE["right periventricular white matter"],
)
PLACEMENT_GROUPS["deep_grey"] = (_CODE["left deep grey nuclei"], _CODE["right deep grey nuclei"])
PLACEMENT_GROUPS["limbic"] = (_CODE["left limbic and insular"], _CODE["right limbic and insular"])
PLACEMENT_GROUPS["cerebellum"] = (_CODE["left cerebellum"], _CODE["right cerebellum"])
PLACEMENT_GROUPS["brainstem"] = (_CODE["brainstem"],)


def read_cerebra_groups(csv_path: Path) -> dict[int, tuple[str, str]]:
    """{CerebrA label value: (hemisphere, group)} from the atlas's label table."""
    wanted = {name.lower(): group for group, names in _GROUP_OF_STRUCTURE.items() for name in names}
    table: dict[int, tuple[str, str]] = {}
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            name = row["Label Name"].strip().lower()
            if name not in wanted:
                raise InputError(
                    f"{csv_path}: unknown CerebrA structure '{row['Label Name']}'; the template cache is stale"
                )
            table[int(row["RH Label"])] = ("right", wanted[name])
            table[int(row["LH Labels"])] = ("left", wanted[name])
    return table


def build_location_atlas(
    cerebra: np.ndarray, brain: np.ndarray, white_matter: np.ndarray, groups: dict[int, tuple[str, str]]
) -> np.ndarray:
    """The coarse atlas (uint8, `ATLAS_LABELS`) on the CerebrA grid.

    brain: boolean brain mask; white_matter: white-matter probability.
    """
    cerebra = np.rint(cerebra).astype(np.int32)
    side_of = np.zeros(cerebra.max() + 1, dtype=np.int8)  # 0 left, 1 right
    group_of = np.full(cerebra.max() + 1, -1, dtype=np.int8)
    for value, (side, group) in groups.items():
        if value < len(group_of):
            side_of[value] = side == "right"
            group_of[value] = _GROUPS.index(group)
    labelled = group_of[cerebra] >= 0
    nearest = ndimage.distance_transform_edt(~labelled, return_distances=False, return_indices=True)
    source = cerebra[tuple(nearest)]
    side, group = side_of[source], group_of[source]
    is_wm = white_matter >= 0.5
    own = labelled
    atlas = np.zeros(cerebra.shape, dtype=np.uint8)
    for side_index, side_name in enumerate(("left", "right")):
        on_side = side == side_index
        for lobe in _LOBES:
            in_lobe = on_side & (group == _GROUPS.index(lobe))
            atlas[in_lobe & (own | ~is_wm)] = _CODE[f"{side_name} {lobe} cortex"]
            atlas[in_lobe & ~own & is_wm] = _CODE[f"{side_name} {lobe} white matter"]
        for group_name, region in (
            ("limbic", "limbic and insular"),
            ("deep", "deep grey nuclei"),
            ("cerebellum", "cerebellum"),
        ):
            atlas[on_side & (group == _GROUPS.index(group_name))] = _CODE[f"{side_name} {region}"]
        ventricle = on_side & (group == _GROUPS.index("ventricles"))
        atlas[ventricle & ~own & is_wm] = _CODE[f"{side_name} periventricular white matter"]
    ventricle = group == _GROUPS.index("ventricles")
    atlas[ventricle & (own | ~is_wm)] = _CODE["ventricles"]
    atlas[group == _GROUPS.index("brainstem")] = _CODE["brainstem"]
    atlas[~brain] = 0
    return atlas
