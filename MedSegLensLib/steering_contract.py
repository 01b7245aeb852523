"""The steering contract: what a steering request may hold, and its limits (torch-free).

One module that every client of steering builds its request through: the
steering engine, the CLI, the worker, the browser viewer and the Slicer module
(whose .ui ranges and parameter annotations are checked against it). It imports
nothing heavy, so light clients (the viewer, Slicer's Qt process) can use it.

Strengths by mode (each latent i with decoder direction d_i and typical
activation a_i, its 99th percentile when active on the SAE's training rows):
- additive: h + alpha * a_i * d_i   (alpha in [-10, 10]; 0 leaves the network unchanged)
- multiplicative: the code z_i scaled by beta, keeping the SAE's reconstruction
  error: h + (beta - 1) * z_i * d_i  (beta in [0, 10]; beta = 1 is exactly the network, 0 ablates)
- clamp: z_i set to value * a_i wherever the region holds: h + (value * a_i - z_i) * d_i
  (value in [0, 10]; 0 ablates the latent)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ParameterError

MODES = ("additive", "multiplicative", "clamp")
STRENGTH_RANGES = {"additive": (-10.0, 10.0), "multiplicative": (0.0, 10.0), "clamp": (0.0, 10.0)}
NEUTRAL_STRENGTH = {"additive": 0.0, "multiplicative": 1.0}
REGION_KINDS = ("none", "tumour-margin", "mask")
MIN_MARGIN_MM = 0.0
MAX_MARGIN_MM = 100.0
DEFAULT_MARGIN_MM = 10.0


@dataclass(frozen=True)
class RegionSpec:
    """Where steering acts: everywhere, the predicted (unsteered) tumour grown by a margin, or a mask file."""

    kind: str = "none"
    margin_mm: float = 0.0
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in REGION_KINDS:
            raise ParameterError(f"region kind {self.kind!r} is unknown; use none, tumour-margin:MM or mask:FILE")
        if self.kind == "tumour-margin" and not (
            math.isfinite(self.margin_mm) and MIN_MARGIN_MM <= self.margin_mm <= MAX_MARGIN_MM
        ):
            raise ParameterError(
                f"tumour margin {self.margin_mm:g} mm is out of range; use {MIN_MARGIN_MM:g} to {MAX_MARGIN_MM:g} mm"
            )
        if self.kind == "mask" and not self.path:
            raise ParameterError("a mask region needs a file: --region mask:FILE")

    @classmethod
    def parse(cls, text: str) -> RegionSpec:
        """'none', 'tumour-margin:MM' or 'mask:FILE' (the command-line form)."""
        kind, _, value = text.partition(":")
        if kind == "none" and not value:
            return cls()
        if kind == "tumour-margin":
            try:
                return cls(kind, margin_mm=float(value))
            except ValueError:
                raise ParameterError(
                    f"--region {text}: the margin must be a number of mm, e.g. tumour-margin:10"
                ) from None
        if kind == "mask":
            return cls(kind, path=value)
        raise ParameterError(f"--region {text!r} is not understood; use none, tumour-margin:MM or mask:FILE")

    def describe(self) -> str:
        if self.kind == "tumour-margin":
            return f"tumour-margin:{self.margin_mm:g}"
        return f"mask:{self.path}" if self.kind == "mask" else "none"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind}
        if self.kind == "tumour-margin":
            data["margin_mm"] = self.margin_mm
        if self.kind == "mask":
            data["path"] = self.path
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> RegionSpec:
        data = data or {"kind": "none"}
        return cls(str(data.get("kind", "none")), float(data.get("margin_mm", 0.0)), data.get("path"))


@dataclass(frozen=True)
class SteeringSpec:
    """Latents to steer, one strength per latent, the mode and the region."""

    latents: tuple[int, ...]
    strengths: tuple[float, ...]
    mode: str = "additive"
    region: RegionSpec = field(default_factory=RegionSpec)

    def __post_init__(self) -> None:
        object.__setattr__(self, "latents", tuple(int(v) for v in self.latents))
        object.__setattr__(self, "strengths", tuple(float(v) for v in self.strengths))
        if self.mode not in MODES:
            raise ParameterError(f"steering mode {self.mode!r} is unknown; use one of {', '.join(MODES)}")
        if not self.latents:
            raise ParameterError("steering needs at least one latent (--latent I[,J...])")
        if len(self.latents) != len(self.strengths):
            raise ParameterError(
                f"{len(self.latents)} latents but {len(self.strengths)} strengths; give one strength per latent"
            )
        if len(set(self.latents)) != len(self.latents):
            raise ParameterError(f"latents {list(self.latents)} repeat an index; give each latent once")
        low, high = STRENGTH_RANGES[self.mode]
        for latent, value in zip(self.latents, self.strengths):
            if not (math.isfinite(value) and low <= value <= high):
                raise ParameterError(
                    f"strength {value:g} for latent {latent} is outside [{low:g}, {high:g}] for {self.mode} steering"
                )

    def check_latents(self, n_latents: int) -> None:
        """Refuse latent indices the SAE does not have."""
        bad = [v for v in self.latents if not 0 <= v < n_latents]
        if bad:
            raise ParameterError(f"latent {bad[0]} does not exist: this SAE has latents 0 to {n_latents - 1}")

    @property
    def is_neutral(self) -> bool:
        """True when the spec cannot change the network (additive 0, multiplicative 1)."""
        neutral = NEUTRAL_STRENGTH.get(self.mode)
        return neutral is not None and all(v == neutral for v in self.strengths)

    def with_strengths(self, strengths) -> SteeringSpec:
        return SteeringSpec(self.latents, tuple(strengths), self.mode, self.region)

    def to_json(self) -> dict[str, Any]:
        return {
            "latents": list(self.latents),
            "strengths": list(self.strengths),
            "mode": self.mode,
            "region": self.region.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SteeringSpec:
        try:
            return cls(
                tuple(data["latents"]),
                tuple(data["strengths"]),
                str(data["mode"]),
                RegionSpec.from_json(data.get("region")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ParameterError(
                f"steering spec is incomplete or malformed ({exc}); it needs latents, strengths and mode"
            ) from None


def steering_options() -> dict[str, Any]:
    """The limits as JSON, as the worker reports them to the viewer and the Slicer module."""
    return {
        "modes": list(MODES),
        "strength_ranges": {m: list(r) for m, r in STRENGTH_RANGES.items()},
        "neutral": dict(NEUTRAL_STRENGTH),
        "regions": list(REGION_KINDS),
        "margin_mm": [MIN_MARGIN_MM, MAX_MARGIN_MM],
        "default_margin_mm": DEFAULT_MARGIN_MM,
    }
