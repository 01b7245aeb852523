"""The provenance record of a segmentation: which model, SAE, latents and strengths produced it.

Plain data with no Slicer dependency, so the steering library, the CLI and the
scene code share one record: the scene attaches it to nodes
(`scene.provenance.attach_provenance`), the steering writer puts it in a JSON
sidecar and in the segmentation file's own metadata.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import __version__
from .errors import IntegrityError, ParameterError

MODES = ("none", "additive", "multiplicative", "clamp")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Provenance:
    """What produced a segmentation: which latents were steered, how, and with which artefacts.

    mode "none" records the unsteered model output. `region` restricts the
    steering (e.g. {"kind": "box", "ijk_min": [...], "ijk_max": [...]}) or is None
    for the whole volume. Hashes are the sha256 of the model and SAE weights.
    """

    latents: list[int]
    strengths: list[float]
    mode: str
    model_sha256: str
    sae_sha256: str | None = None
    layer: str | None = None
    region: dict[str, Any] | None = None
    source_segmentation: str | None = None
    created: str = field(default_factory=_now)
    tool_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.latents = [int(v) for v in self.latents]
        self.strengths = [float(v) for v in self.strengths]
        if self.mode not in MODES:
            raise ParameterError(f"steering mode '{self.mode}' is not one of {', '.join(MODES)}")
        if len(self.latents) != len(self.strengths):
            raise ParameterError(
                f"{len(self.latents)} latents but {len(self.strengths)} strengths; give one strength per latent"
            )
        if not all(math.isfinite(v) for v in self.strengths):
            raise ParameterError("steering strengths must be finite numbers")
        if self.mode != "none" and (not self.latents or not self.sae_sha256):
            raise ParameterError(f"{self.mode} steering needs at least one latent and the SAE's hash")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Provenance:
        try:
            fields = json.loads(text)
            return cls(**fields)
        except (json.JSONDecodeError, TypeError, ValueError, ParameterError) as exc:
            raise IntegrityError(
                f"provenance attribute is damaged ({exc}); the segmentation's origin is unknown"
            ) from None
