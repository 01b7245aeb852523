"""What the demo job builds and how big: cohorts, epochs, SAE sizes, study budget (every number of the run).

`DemoSettings()` is the full demo, sized so the first run fits in about 30
minutes on a 2-core CPU (docs/demo.md has the measured stage times);
`DemoSettings.quick()` is a few-minute look with tiny networks. Each stage
hashes only the fields it uses (`Stage.uses`), so changing, say, the steering
budget reruns the steering study and what follows it, not the training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ParameterError
from ..sae.defaults import default_for_architecture
from ..settings_json import read_settings
from ..steering.study import StudySettings

ROLES = ("train", "test", "calibration")


@dataclass(frozen=True)
class CohortSpec:
    """One synthetic cohort: `role` says what the demo uses it for (train, held-out test, steering calibration)."""

    name: str
    population: str
    cases: int
    seed: int
    role: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ParameterError(f"cohort {self.name}: role {self.role!r} is not one of {', '.join(ROLES)}")


def default_cohorts(
    train: int = 32, test: int = 10, adult_test: int = 6, healthy: int = 4, calibration: int = 6
) -> tuple[CohortSpec, ...]:
    """Adult training cases, held-out adult/pediatric/SSA/healthy cases and SSA/pediatric calibration cases.

    The seeds of the first five are the baseline failure map's (bench/baseline_failure_map.py).
    """
    cohorts = [
        CohortSpec("adult_train", "adult", train, 101, "train"),
        CohortSpec("adult_test", "adult", adult_test, 102, "test"),
        CohortSpec("pediatric_test", "pediatric", test, 103, "test"),
        CohortSpec("ssa_test", "ssa", test, 104, "test"),
        CohortSpec("healthy_test", "healthy", healthy, 105, "test"),
    ]
    if calibration:
        cohorts += [
            CohortSpec("pediatric_calib", "pediatric", calibration, 106, "calibration"),
            CohortSpec("ssa_calib", "ssa", calibration, 107, "calibration"),
        ]
    return tuple(cohorts)


def _study() -> StudySettings:
    # The reduced study: the default budget per method, fewer cases (a few minutes on two cores).
    return StudySettings(calibration_cases=4, test_cases=5, dose_cases=2)


@dataclass(frozen=True)
class DemoSettings:
    spacing: float = 2.0
    severity: float = 1.0
    cohorts: tuple[CohortSpec, ...] = field(default_factory=default_cohorts)
    architectures: tuple[str, ...] = ("unet", "segformer")
    model_size: str = "default"  # "default" (docs/models.md) or "tiny" (quick looks, tests)
    epochs: tuple[tuple[str, int], ...] = (("unet", 20), ("segformer", 30))
    training_seed: int = 0
    val_every: int = 5
    failure_dice: float = 0.5
    # SAE: layer per architecture (empty: sae/defaults.py), sizes (0: the default's), rows, cases
    layers: tuple[tuple[str, str], ...] = ()
    sae_latents: int = 0
    sae_k: int = 0
    sae_rows: int = 1_000_000
    sae_batch: int = 4096
    sae_adult_cases: int = 16
    sae_quota_scale: float = 1.0
    seed: int = 0
    # interpretation, diffing, steering, latent maps
    interpret_cards: int = 3
    diff_bootstrap: int = 200
    diff_arch_cases: int = 8
    diff_permutations: int = 50
    steering_architecture: str = "unet"
    study: StudySettings = field(default_factory=_study)
    map_cases: int = 2
    map_latents: int = 6

    def __post_init__(self) -> None:
        names = [c.name for c in self.cohorts]
        if len(set(names)) != len(names):
            raise ParameterError(f"cohort names must be unique, got {names}")
        if self.model_size not in ("default", "tiny"):
            raise ParameterError(f"model_size {self.model_size!r}: use 'default' or 'tiny'")
        if self.steering_architecture not in self.architectures:
            raise ParameterError(
                f"steering architecture {self.steering_architecture!r} is not among {', '.join(self.architectures)}"
            )
        missing = [a for a in self.architectures if a not in dict(self.epochs)]
        if missing:
            raise ParameterError(f"no epochs given for {', '.join(missing)}")

    @classmethod
    def quick(cls) -> DemoSettings:
        """Tiny networks on small 4 mm cohorts: every stage in a few minutes (numbers are not meaningful)."""
        return cls(
            spacing=4.0,
            cohorts=default_cohorts(train=10, test=4, adult_test=3, healthy=2, calibration=3),
            model_size="tiny",
            epochs=(("unet", 8), ("segformer", 8)),
            val_every=4,
            layers=TINY_LAYERS,
            sae_latents=64,
            sae_k=4,
            sae_rows=65_536,
            sae_batch=1024,
            sae_adult_cases=6,
            diff_bootstrap=50,
            diff_arch_cases=4,
            diff_permutations=10,
            study=StudySettings(
                latents_per_population=2,
                alphas=(1.0, 2.0),
                logit_biases=(1.0,),
                calibration_cases=3,
                test_cases=3,
                dose_cases=1,
                dose_latents=1,
                dose_alphas=(-1.0, 1.0),
                min_firing=0.0,
            ),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> DemoSettings:
        """A config from JSON: any subset of the fields (cohorts as a list of objects, study as its settings)."""
        data = read_settings(path, cls, "demo settings")
        try:
            if "cohorts" in data:
                data["cohorts"] = tuple(CohortSpec(**c) for c in data["cohorts"])
            if "study" in data:
                data["study"] = StudySettings(**data["study"])
            for name in ("epochs", "layers"):
                if name in data:
                    data[name] = tuple((str(k), v) for k, v in dict(data[name]).items())
            if "architectures" in data:
                data["architectures"] = tuple(data["architectures"])
            return cls(**data)
        except TypeError as exc:
            raise ParameterError(f"{path}: {exc}") from None

    def to_json(self) -> dict:
        """The config as JSON data that `from_file` reads back."""
        data = {f.name: self.field_json(f.name) for f in dataclasses.fields(self)}
        data["epochs"], data["layers"] = dict(self.epochs), dict(self.layers)
        return data

    def replace(self, **changes) -> DemoSettings:
        return dataclasses.replace(self, **changes)

    def role(self, role: str) -> list[CohortSpec]:
        return [c for c in self.cohorts if c.role == role]

    def epochs_of(self, architecture: str) -> int:
        return dict(self.epochs)[architecture]

    def layer_of(self, architecture: str) -> str | None:
        """The configured SAE layer, or None for the architecture's default (sae/defaults.py)."""
        return dict(self.layers).get(architecture)

    def sae_plan(self, architecture: str) -> tuple[str, int, int, str]:
        """(layer, latents, k, kind) of an architecture's SAE: the configured layer and sizes, else the defaults."""
        default = default_for_architecture(architecture)
        return (
            self.layer_of(architecture) or default.layer,
            self.sae_latents or default.n_latents,
            self.sae_k or default.k,
            default.kind,
        )

    def field_json(self, name: str):
        """A config field as JSON data (for stage keys). `sae_layer:ARCH` and `sae_size:ARCH` are the resolved
        SAE plan, not a field: a stage keyed on them reruns when sae/defaults.py changes the default it used."""
        if name.startswith(("sae_layer:", "sae_size:")):
            kind, architecture = name.split(":", 1)
            plan = self.sae_plan(architecture)
            return plan[0] if kind == "sae_layer" else list(plan[1:])
        value = getattr(self, name)
        if isinstance(value, StudySettings):
            return value.to_json()
        if isinstance(value, tuple) and value and isinstance(value[0], CohortSpec):
            return [dataclasses.asdict(c) for c in value]
        return value


# Cheap layers of the tiny networks for `--quick` and the pipeline tests: the U-Net's bottleneck and the
# SegFormer's decoder fusion (stride 4). The SegFormer's stage 4 has stride 16 = the tiny patch, one layer voxel
# per window, which leaves the stitched map with gaps as soon as a case needs more than one window.
TINY_LAYERS = (("unet", "model.1.submodule.1.submodule"), ("segformer", "decoder.fuse_act"))
