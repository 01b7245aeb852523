"""The steering panel: chosen latents, mode, one strength slider per latent, region, Dice before/after.

Every change of a control builds a steering spec and queues the worker's `steer`
job in the "steer" slot: while one preview is computed the newest request waits
and older waiting ones are dropped, so the page always ends on the latest
sliders. Options (modes, strength ranges, neutral strengths, region kinds) come
from the `encode` result, i.e. from the steering contract the engine checks
(`MedSegLensLib.steering_contract`), and the spec is built through that contract. The result is a
segmentation file plus provenance; the app shows it as the "steered" source and
Accept saves it with that provenance.

Strengths are in the latent's own units: an additive (or clamp) strength of 1
adds one typical activation of the latent (its 99th percentile on the SAE's
training rows, `latent_scales.json`), so a slider step of `STEP_FRACTION` moves
by that fraction of the typical activation; each slider shows its strength as a
number, with the activation it adds where the typical activation is known. The
default region is the predicted tumour plus `DEFAULT_MARGIN_MM`.
"""

from __future__ import annotations

import json
import math

from ..errors import ParameterError
from ..steering_contract import DEFAULT_MARGIN_MM, MAX_MARGIN_MM, RegionSpec, SteeringSpec

DICE_ROWS = ("WT", "TC", "ET", "ED", "NCR")
STEP_FRACTION = 0.1  # slider step: a tenth of the latent's typical activation (additive, clamp) or of its code
SHOWN_REGIONS = ("none", "tumour-margin")  # a mask region needs a drawn mask: Slicer only
PREVIEW_LABEL = "preview (instance-norm statistics frozen; exact result follows)"
NOT_ANALYSED = "Steering needs the case analysed by the workspace's model and SAE."


def dice_rows(before: dict | None, after: dict | None) -> list[dict]:
    """Side-by-side Dice per region ("—" where there is no reference)."""

    def text(scores, region):
        value = (scores or {}).get(region)
        return "—" if value is None else f"{value:.3f}"

    return [{"region": region, "before": text(before, region), "after": text(after, region)} for region in DICE_ROWS]


def _finite(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParameterError(f"{what} {value!r} is not a finite number")
    return float(value)


def strength_text(mode: str, value: float, typical: float | None) -> str:
    """A strength as the page shows it: in typical activations (additive, clamp) or as a factor (multiplicative)."""
    if mode == "multiplicative":
        return f"×{value:.2f} of its code"
    sign = "+" if mode == "additive" and value > 0 else ""
    text = f"{sign}{value:.2f} × typical"
    if typical:
        text += f" = {sign}{value * typical:.3g}"
    return text if mode == "additive" else f"clamp at {text}"


class SteeringPanel:
    """Steering state (`steer_*`, `dice_rows`) and the spec the worker's `steer` job takes."""

    def __init__(self, state, typical: list[float] | None = None):
        self.state = state
        self.typical = typical
        self.options: dict = {}
        self.reset(NOT_ANALYSED)

    def reset(self, note: str) -> None:
        s = self.state
        s.steer_available = False
        s.steer_note = note
        s.steer_modes = []
        s.steer_mode = "additive"
        s.steer_range = [-10.0, 10.0]
        s.steer_neutral = 0.0
        s.steer_regions = list(SHOWN_REGIONS)
        s.steer_region = "tumour-margin"
        s.steer_margin = DEFAULT_MARGIN_MM
        s.steer_step = STEP_FRACTION
        s.steer_readout = {}
        s.steer_max_margin = MAX_MARGIN_MM
        s.steer_choices = []
        s.steer_latents = []
        s.steer_strengths = {}
        s.steer_summary = ""
        s.steer_shown = {"strengths": "", "kind": "", "seconds": None, "views": ""}
        s.dice_rows = dice_rows(None, None)

    def set_analysis(self, result: dict) -> None:
        """Enable the panel for the analysed case: its active latents and the engine's options."""
        self.options = dict(result["steering"])
        s = self.state
        s.steer_modes = [m for m in self.options["modes"] if m in self.options["neutral"]]
        s.steer_mode = s.steer_modes[0]
        s.steer_range = list(self.options["strength_ranges"][s.steer_mode])
        s.steer_neutral = self.neutral()
        s.steer_regions = [r for r in SHOWN_REGIONS if r in self.options["regions"]]
        s.steer_region = "tumour-margin" if "tumour-margin" in s.steer_regions else s.steer_regions[0]
        s.steer_margin = float(self.options.get("default_margin_mm", DEFAULT_MARGIN_MM))
        s.steer_choices = [
            {"value": row["latent"], "title": f"{row['latent']} · {row['category'] or 'uncategorised'}"}
            for row in result["latents"]
        ]
        s.steer_latents, s.steer_strengths, s.steer_readout = [], {}, {}
        s.steer_available, s.steer_note = True, ""

    def neutral(self) -> float:
        return float(self.options.get("neutral", {}).get(self.state.steer_mode, 0.0))

    def on_mode(self) -> None:
        """A new mode has its own range and neutral strength: the sliders start over from neutral."""
        mode = self.state.steer_mode
        if mode not in self.state.steer_modes:
            raise ParameterError(f"steering mode {mode!r} is not one of {', '.join(self.state.steer_modes)}")
        self.state.steer_range = list(self.options["strength_ranges"][mode])
        self.state.steer_neutral = self.neutral()
        self.state.steer_strengths = {}
        self.publish_readout()

    def typical_of(self, latent: int) -> float | None:
        if self.typical and 0 <= latent < len(self.typical) and self.typical[latent] > 0:
            return self.typical[latent]
        return None

    def publish_readout(self) -> None:
        """Each chosen latent's strength as a number (`steer_readout`, keyed like `steer_strengths`)."""
        s, neutral = self.state, self.neutral()
        readout = {}
        for latent in s.steer_latents or []:
            if isinstance(latent, int) and not isinstance(latent, bool):
                value = (s.steer_strengths or {}).get(str(latent), neutral)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    readout[str(latent)] = strength_text(s.steer_mode, float(value), self.typical_of(latent))
        s.steer_readout = readout

    def spec(self) -> dict | None:
        """The `steer` job's spec for the controls, or None when nothing is steered (all strengths neutral)."""
        s = self.state
        choices = {choice["value"] for choice in s.steer_choices}
        latents = [int(v) for v in s.steer_latents if isinstance(v, int) and not isinstance(v, bool)]
        if sorted(latents) != sorted(s.steer_latents) or not set(latents) <= choices:
            raise ParameterError(f"latents {s.steer_latents!r} are not latents active in this case")
        neutral = self.neutral()
        strengths = [
            _finite((s.steer_strengths or {}).get(str(j), neutral), f"strength of latent {j}") for j in latents
        ]
        low, high = s.steer_range
        if any(not low <= v <= high for v in strengths):
            raise ParameterError(f"strengths {strengths} must lie in [{low:g}, {high:g}] for {s.steer_mode} steering")
        if not latents or all(v == neutral for v in strengths):
            return None
        if s.steer_region not in SHOWN_REGIONS:
            raise ParameterError(f"steering region {s.steer_region!r} is not one of {', '.join(SHOWN_REGIONS)}")
        margin = _finite(s.steer_margin, "tumour margin") if s.steer_region == "tumour-margin" else 0.0
        region = RegionSpec(s.steer_region, margin)
        return SteeringSpec(tuple(latents), tuple(strengths), s.steer_mode, region).to_json()

    def show_result(self, result: dict, redrawn: list[str]) -> None:
        """The readout of a shown steering result: Dice before/after per region, what changed, and whether it is
        the labelled preview (instance-norm statistics frozen; the exact result follows) or the exact result.

        `steer_shown` says which strengths the views show and how, and which views showing it redrew (`redrawn`:
        the others already showed it); the page's summary carries it as data attributes, which the latency
        benchmark reads."""
        preview = bool(result.get("preview"))
        self.state.dice_rows = dice_rows(result.get("dice_unsteered"), result.get("dice"))
        self.state.steer_summary = (
            f"{PREVIEW_LABEL if preview else 'exact'} · {result['changed_voxels']} voxels changed · "
            f"{result['windows_recomputed']}/{result['windows_total']} windows · {result['seconds']:.2f} s"
        )
        self.state.steer_shown = {
            "strengths": json.dumps(result["spec"]["strengths"]),
            "kind": "preview" if preview else "exact",
            "seconds": result["seconds"],
            "views": " ".join(redrawn),
        }

    def show_unsteered(self, dice: dict | None) -> None:
        self.state.dice_rows = dice_rows(dice, None)
        self.state.steer_summary = ""
        self.state.steer_shown = {"strengths": "", "kind": "", "seconds": None, "views": ""}
