"""Settings of the recovery study (JSON-loadable). The defaults are the library's; a run's own settings are
recorded in its `study.json` (the pre-registered benchmark uses bench/steering_protocol.json instead)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...errors import ParameterError
from ...settings_json import read_settings

# The region each population's selections *target* (SSA cases are under-segmented as a whole, pediatric cases
# lose the core). Failures are counted one way for every population (shared/BRIEF.md): any of WT, TC, ET
# below `failure_dice`.
DEFAULT_FAILURE_REGIONS = {"ssa": "WT", "pediatric": "TC"}
REFERENCE_POPULATION = "adult"
HEALTHY_POPULATION = "healthy"


@dataclass
class StudySettings:
    """How failures are defined, which interventions are searched and with what budget.

    Every method gets `latents_per_population * len(alphas)` candidates per case (the budget):
    SAE latents x strengths, random directions x strengths, the mean-difference direction at as
    many strengths, and per-class logit biases. All act inside the predicted tumour + `margin_mm`.
    Label-free selection is fitted on up to `calibration_cases` labelled cases per population
    (the `--calibration` cohorts, or a seeded `calibration_fraction` of `--data`); `test_cases` > 0
    keeps only the first that many test cases per population (by case id).
    """

    failure_dice: float = 0.5
    failure_regions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FAILURE_REGIONS))
    margin_mm: float = 10.0
    latents_per_population: int = 4
    alphas: tuple[float, ...] = (1.0, 2.0, 4.0)
    logit_biases: tuple[float, ...] = (-1.0, 1.0, 2.5)
    min_firing: float = 0.02
    calibration_fraction: float = 0.3
    calibration_cases: int = 20
    test_cases: int = 0
    dose_cases: int = 12
    dose_alphas: tuple[float, ...] = (-4.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 4.0)
    dose_latents: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        self.alphas = tuple(float(a) for a in self.alphas)
        self.logit_biases = tuple(float(b) for b in self.logit_biases)
        self.dose_alphas = tuple(float(a) for a in self.dose_alphas)
        if not 0 < self.failure_dice < 1:
            raise ParameterError(f"failure_dice {self.failure_dice} must be between 0 and 1")
        bad = {p: r for p, r in self.failure_regions.items() if r not in ("WT", "TC", "ET", "ED")}
        if bad:
            raise ParameterError(f"failure regions {bad} are not WT, TC, ET or ED")
        if self.latents_per_population < 1 or not self.alphas:
            raise ParameterError("the study needs at least one latent per population and one strength")
        if len(self.logit_biases) * 4 != self.budget:
            raise ParameterError(
                f"logit biases: 4 classes x {len(self.logit_biases)} values must equal the budget "
                f"{self.budget} (latents_per_population x alphas)"
            )
        if not 0 < self.calibration_fraction < 1:
            raise ParameterError("calibration_fraction must be between 0 and 1")

    @property
    def budget(self) -> int:
        """Candidates per method and case."""
        return self.latents_per_population * len(self.alphas)

    def failure_region(self, population: str) -> str:
        return self.failure_regions.get(population, "WT")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_file(cls, path: str | Path) -> StudySettings:
        data = read_settings(path, cls, "study settings")
        return cls(**data)
