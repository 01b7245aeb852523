"""The five synthetic populations: every way they differ is a named parameter.

`PopulationShift` holds all parameters of one population; each `(low, high)`
range is drawn uniformly per case. The adult glioma cohort is the reference.
A population at severity `s` is `adult + s * (preset - adult)` for every
numeric parameter (location weights included), clipped to the parameter's
valid bounds: severity 0 is adult-like, 1 (the default) the documented preset,
2 twice as far from adult. Healthy is adult anatomy and scanner without a
tumour; severity does not change it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError

Range = tuple[float, float]
POPULATIONS: tuple[str, ...] = ("adult", "pediatric", "ssa", "met", "healthy")
SEVERITY_RANGE: Range = (0.0, 2.0)
DEFAULT_SEVERITY = 1.0
LOCATION_GROUPS: tuple[str, ...] = (
    "frontal",
    "temporal",
    "parietal",
    "occipital",
    "limbic",
    "periventricular",
    "deep_grey",
    "cerebellum",
    "brainstem",
)


def _param(default, doc: str, bounds: Range, unit: str = ""):
    return field(default=default, metadata={"doc": doc, "bounds": bounds, "unit": unit})


ADULT_LOCATIONS = {
    "frontal": 0.36,
    "temporal": 0.30,
    "parietal": 0.22,
    "occipital": 0.05,
    "limbic": 0.03,
    "periventricular": 0.02,
    "deep_grey": 0.02,
}


@dataclass(frozen=True)
class PopulationShift:
    """Parameters of one population (defaults: adult glioma on a 3T-like scanner)."""

    name: str = "adult"
    has_tumour: bool = True
    # anatomy
    head_scale: Range = _param((0.93, 1.07), "brain size relative to MNI152", (0.6, 1.3))
    axis_jitter: float = _param(0.04, "extra per-axis scale jitter (anisotropy), +-", (0.0, 0.2))
    rotation_deg: float = _param(7.0, "head rotation about each axis, +-", (0.0, 20.0), "deg")
    deformation_mm: Range = _param((1.5, 3.0), "amplitude of the smooth random deformation", (0.0, 10.0), "mm")
    myelination: Range = _param((1.0, 1.0), "white/grey-matter contrast kept (1 adult, 0 none)", (0.0, 1.0))
    # tumour
    location_weights: dict[str, float] = field(
        default_factory=lambda: dict(ADULT_LOCATIONS),
        metadata={"doc": "where tumours arise (weights over atlas groups)", "bounds": (0.0, 1.0), "unit": ""},
    )
    lesion_count: Range = _param((1.0, 1.0), "number of separate lesions (whole number drawn uniformly)", (1.0, 8.0))
    midline_max_mm: float = _param(90.0, "tumour centre at most this far from the midline", (5.0, 90.0), "mm")
    core_radius_mm: Range = _param((10.0, 19.0), "radius of the tumour core (NCR+ET)", (4.0, 35.0), "mm")
    lobulation: Range = _param((0.15, 0.35), "irregularity of the tumour border", (0.0, 0.6))
    necrosis_fraction: Range = _param((0.35, 0.7), "necrotic share of the core radius", (0.0, 0.9))
    enhancing_fraction: Range = _param((0.75, 1.0), "share of the viable rim that enhances", (0.0, 1.0))
    enhancement: Range = _param((1.35, 1.6), "enhancing tumour on T1c, times white matter", (0.8, 2.0))
    edema_extent_mm: Range = _param((6.0, 18.0), "edema reach along white matter beyond the core", (0.0, 50.0), "mm")
    edema_contrast: Range = _param((0.85, 1.0), "edema hyperintensity on T2/FLAIR (1 = adult)", (0.1, 1.5))
    mass_effect: Range = _param((0.25, 0.5), "tissue displacement by the tumour (share of its radius)", (0.0, 0.7))
    # scanner
    noise: Range = _param((0.01, 0.03), "Rician noise sigma, times white matter", (0.0, 0.4))
    slice_thickness_mm: Range = _param((0.0, 0.0), "acquired axial slice thickness (0 = isotropic)", (0.0, 10.0), "mm")
    inplane_blur_mm: Range = _param((0.0, 0.0), "in-plane blur (lower resolution), FWHM", (0.0, 4.0), "mm")
    bias_amplitude: Range = _param((0.0, 0.08), "smooth multiplicative bias field, +-", (0.0, 0.6))
    ghosting: Range = _param((0.0, 0.0), "motion ghost intensity along phase encoding", (0.0, 0.3))

    @classmethod
    def parameter_fields(cls) -> list[dataclasses.Field]:
        """The numeric, documented parameters (everything severity interpolates)."""
        return [f for f in dataclasses.fields(cls) if "doc" in f.metadata]


PRESETS: dict[str, PopulationShift] = {
    "adult": PopulationShift(),
    "healthy": PopulationShift(name="healthy", has_tumour=False),
    # Calibrated with bench/calibrate_synth.py (docs/synth.md): an adult-trained U-Net fails on 30-35 % of the
    # cases at severity 1, on none at 0.5 and on 40-85 % at 1.5.
    "pediatric": PopulationShift(
        name="pediatric",
        head_scale=(0.83, 0.93),
        myelination=(0.64, 0.88),
        location_weights={
            "frontal": 0.11,
            "temporal": 0.06,
            "parietal": 0.04,
            "occipital": 0.01,
            "limbic": 0.05,
            "deep_grey": 0.16,
            "cerebellum": 0.28,
            "brainstem": 0.29,
        },
        midline_max_mm=34.0,
        core_radius_mm=(10.0, 18.0),
        necrosis_fraction=(0.05, 0.45),
        enhancing_fraction=(0.15, 0.6),
        enhancement=(1.1, 1.3),
        edema_extent_mm=(1.0, 10.0),
        edema_contrast=(0.73, 0.92),
        mass_effect=(0.2, 0.42),
        noise=(0.014, 0.034),
    ),
    "ssa": PopulationShift(
        name="ssa",
        core_radius_mm=(12.0, 22.0),
        edema_extent_mm=(13.0, 28.0),
        edema_contrast=(0.65, 0.82),
        enhancement=(1.1, 1.28),
        noise=(0.06, 0.10),
        slice_thickness_mm=(3.5, 5.0),
        inplane_blur_mm=(0.4, 1.0),
        bias_amplitude=(0.10, 0.23),
        ghosting=(0.015, 0.055),
    ),
    # BraTS-MET-like brain metastases, designed from the literature (docs/synth.md, "The metastasis shift")
    # before any model saw them; not tuned against a network.
    "met": PopulationShift(
        name="met",
        location_weights={
            "frontal": 0.30,
            "temporal": 0.12,
            "parietal": 0.20,
            "occipital": 0.12,
            "limbic": 0.03,
            "deep_grey": 0.03,
            "cerebellum": 0.15,
            "brainstem": 0.05,
        },
        lesion_count=(1.0, 4.0),
        core_radius_mm=(4.0, 9.0),
        lobulation=(0.05, 0.2),
        necrosis_fraction=(0.0, 0.5),
        enhancing_fraction=(0.85, 1.0),
        enhancement=(1.45, 1.75),
        edema_extent_mm=(10.0, 25.0),
        edema_contrast=(0.9, 1.05),
        mass_effect=(0.1, 0.3),
    ),
}


def population_shift(name: str, severity: float = DEFAULT_SEVERITY) -> PopulationShift:
    """The parameters of population `name` at `severity` (see the module docstring)."""
    if name not in PRESETS:
        raise ParameterError(f"unknown population '{name}'; choose one of {', '.join(POPULATIONS)}")
    low, high = SEVERITY_RANGE
    if not (low <= float(severity) <= high):
        raise ParameterError(f"severity {severity:g} is outside {low:g}-{high:g}; 1 is the documented default")
    adult, preset = PRESETS["adult"], PRESETS[name]
    changes = {}
    for spec in PopulationShift.parameter_fields():
        start, end = getattr(adult, spec.name), getattr(preset, spec.name)
        changes[spec.name] = _interpolate(start, end, float(severity), spec.metadata["bounds"])
    return dataclasses.replace(preset, **changes)


def _interpolate(start, end, severity: float, bounds: Range):
    if isinstance(start, dict):
        keys = sorted(set(start) | set(end), key=LOCATION_GROUPS.index)
        weights = {k: max(0.0, start.get(k, 0.0) + severity * (end.get(k, 0.0) - start.get(k, 0.0))) for k in keys}
        total = sum(weights.values())
        return {k: w / total for k, w in weights.items() if w > 0}
    value = np.clip(np.asarray(start, float) + severity * (np.asarray(end, float) - np.asarray(start, float)), *bounds)
    return tuple(sorted(float(v) for v in value)) if isinstance(start, tuple) else float(value)


def parameter_table() -> str:
    """The population parameters at severity 1 as a Markdown table (docs/synth.md embeds it)."""
    names = ("adult", "pediatric", "ssa", "met")
    lines = ["| parameter | meaning | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for spec in PopulationShift.parameter_fields():
        unit = f" ({spec.metadata['unit']})" if spec.metadata["unit"] else ""
        cells = [_format(getattr(PRESETS[n], spec.name)) for n in names]
        lines.append(f"| `{spec.name}` | {spec.metadata['doc']}{unit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _format(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.2f}" for k, v in value.items())
    if isinstance(value, tuple):
        return f"{value[0]:g}-{value[1]:g}" if value[0] != value[1] else f"{value[0]:g}"
    return f"{value:g}"
