"""The frozen protocol of the steering benchmark (`bench/steering_protocol.json`).

A protocol fixes everything a result depends on before the run: cohorts and
seeds, resolution, model and SAE recipes, the candidate grid, the selection
rules and the primary comparison. Loading, the git check and the binding of a
results folder are the shared pre-registration rules (`MedSegLensLib.preregistration`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...preregistration import FrozenProtocol


@dataclass(frozen=True)
class Cohort:
    name: str
    population: str
    cases: int
    seed: int
    role: str


class Protocol(FrozenProtocol):
    """The parsed protocol; `small` is the reduced variant used by tests (same code, tiny sizes)."""

    REQUIRED = ("name", "failure", "cohorts", "grid", "model", "sae", "region", "primary", "statistics")
    ROLES = ("train", "calibration", "test", "harm")

    # -- what the run uses -----------------------------------------------------------------------
    @property
    def spacing(self) -> float:
        return float(self.data["small"]["spacing"] if self.small else self.data["resolution_mm"])

    @property
    def dice_below(self) -> float:
        return float(self.data["failure"]["dice_below"])

    @property
    def healthy_ml(self) -> float:
        return float(self.data["failure"]["healthy_ml_above"])

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(self.data["failure"]["regions"])

    @property
    def margin_mm(self) -> float:
        return float(self.data["region"]["mm"])

    @property
    def directions(self) -> int:
        grid = dict(self.data["grid"], **(self.data["small"]["grid"] if self.small else {}))
        return int(grid["directions"])

    @property
    def signs(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data["grid"]["signs"])

    @property
    def magnitudes(self) -> tuple[float, ...]:
        grid = dict(self.data["grid"], **(self.data["small"]["grid"] if self.small else {}))
        return tuple(float(m) for m in grid["magnitudes"])

    @property
    def budget(self) -> int:
        return self.directions * len(self.signs) * len(self.magnitudes)

    @property
    def random_seed(self) -> int:
        return int(self.data["grid"]["random_seed"])

    @property
    def bootstrap(self) -> tuple[int, int]:
        stats = self.data["statistics"]
        return (1000 if self.small else int(stats["bootstrap"])), int(stats["bootstrap_seed"])

    def cohorts(self, role: str | None = None) -> list[Cohort]:
        """Cohorts of a role (all without), in protocol order; the small variant takes its sizes per role."""
        out = [Cohort(**entry) for entry in self.data["cohorts"]]
        if self.small:
            sizes = self.data["small"]["cases"]
            out = [Cohort(c.name, c.population, int(sizes[c.role]), c.seed, c.role) for c in out]
        return [c for c in out if role is None or c.role == role]

    def shifted_populations(self) -> list[str]:
        return sorted({c.population for c in self.cohorts("test")})
