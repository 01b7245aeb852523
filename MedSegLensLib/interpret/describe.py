"""One sentence per latent, assembled from its record's numbers only (no language model).

"Fires" and "activation" count only activity at or above the latent's firing
threshold (records.py), so faint activity elsewhere does not move the sentence.
The scores quoted are the held-out ones (the label's target at the threshold
chosen on the fit cases); an artefact latent is described by what flagged it. The
sentence does not repeat the category (readers show both side by side); a named
latent whose map carries a lattice or seams says so after its scores.

Every number in the sentence is read from the record (`records.latent_record`),
rounded for print: AUROC and Dice to two decimals, shares to whole percent.
"""

from __future__ import annotations

from .artefacts import EDGE, GRID, OUTSIDE, SEAM
from .location import LOBES
from .targets import TARGET_NAMES

PHRASES: dict[str, str] = {
    "ED": "peritumoural edema",
    "ET": "enhancing rim of the tumour",
    "NCR": "necrotic / non-enhancing tumour core",
    "boundary": "tumour boundary (within {shell_mm:g} mm outside the whole tumour)",
    "CSF": "cerebrospinal fluid outside the tumour",
    "GM": "grey matter outside the tumour",
    "WM": "white matter outside the tumour",
    "background": "outside the brain",
}


def _percent(share: float) -> str:
    return f"{100 * share:.0f} %"


def _populations(populations: dict[str, dict]) -> str:
    parts = [f"{p['fired']} of {p['cases']} {name}" for name, p in populations.items()]
    parts[0] += " cases"
    if len(parts) == 1:
        return f"fires in {parts[0]}"
    return "fires in " + ", ".join(parts[:-1]) + f" and {parts[-1]}"


def region_phrase(region: str) -> str:
    """An atlas region group as it reads in a sentence ("the left frontal lobe", "the brainstem")."""
    if region.split(" ")[-1] in LOBES:
        return f"the {region} lobe"
    if region.endswith("limbic and insular"):
        return f"the {region} regions"
    return f"the {region}"


def _location(location: dict | None) -> str:
    if not location:
        return ""
    if location["outside_brain"] >= 0.5:
        return f"; mostly outside the brain ({_percent(location['outside_brain'])} of its above-threshold activation)"
    regions = location["regions"]
    if regions and regions[0]["share"] >= 0.5:
        return (
            f"; mostly in {region_phrase(regions[0]['region'])} "
            f"({_percent(regions[0]['share'])} of its above-threshold activation in the brain)"
        )
    for side in ("left", "right"):
        if location[side] >= 0.6:
            return (
                f"; mostly in the {side} hemisphere "
                f"({_percent(location[side])} of its above-threshold activation in the brain)"
            )
    return (
        f"; spread out (left {_percent(location['left'])}, right {_percent(location['right'])}, "
        f"midline {_percent(location['midline'])} of its above-threshold activation in the brain)"
    )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _artefact(artefact: dict) -> str:
    kind = artefact["kind"]
    if kind == GRID:
        return f"a lattice (spectral peak {artefact['grid_peak_ratio']:.1f}x at the up-sampling period)"
    if kind == SEAM:
        return f"window seams (spectral peak {artefact['seam_peak_ratio']:.1f}x at the window step)"
    if kind == EDGE:
        return f"on the volume's edge ({_percent(artefact['volume_edge'])} of its activation)"
    assert kind == OUTSIDE, kind
    return f"outside the head ({_percent(artefact['outside_head'])} of its activation)"


def describe(record: dict, shell_mm: float) -> str:
    """The sentence for one latent record (see records.py for its fields)."""
    if not record["active"]:
        total = sum(p["cases"] for p in record["populations"].values())
        return f"never active on these {total} cases."
    held_out = record["held_out"]
    numbers = f"held-out AUROC {_number(held_out['auroc'])}, Dice {_number(held_out['dice'])}"
    kind = record["artefact"]["kind"]
    if kind and record["category"] == kind:
        head = f"{_artefact(record['artefact'])}; best match {TARGET_NAMES[held_out['target']]} ({numbers})"
    elif record["validated"]:
        head = PHRASES[held_out["target"]].format(shell_mm=shell_mm) + f" ({numbers})"
        if kind:  # a feature drawn with the layer's lattice or seams (categories.LOCATED_LIFT_MIN)
            head += f", drawn as {_artefact(record['artefact'])}"
    else:
        head = f"no label holds on held-out cases (best: {TARGET_NAMES[held_out['target']]}, {numbers})"
    return f"{head}; {_populations(record['populations'])}{_location(record['location'])}."
