"""The frozen protocol of the steering benchmark (`bench/steering_protocol.json`) and its checks.

A protocol fixes everything a result depends on before the run: cohorts and
seeds, resolution, model and SAE recipes, the candidate grid, the selection
rules and the primary comparison. `check_committed` refuses a protocol file
that git does not hold unchanged; `bind_results` refuses a results folder
written for another version of the protocol (sha256 and commit are stored
beside the results).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ...errors import InputError, OutputError, ParameterError
from ...fileio import write_json_atomic

BINDING = "protocol.json"
ROLES = ("train", "calibration", "test", "harm")


@dataclass(frozen=True)
class Cohort:
    name: str
    population: str
    cases: int
    seed: int
    role: str


@dataclass(frozen=True)
class Protocol:
    """The parsed protocol; `small` is the reduced variant used by tests (same code, tiny sizes)."""

    path: Path
    sha256: str
    data: dict
    small: bool = False

    @classmethod
    def load(cls, path: str | Path, small: bool = False) -> Protocol:
        path = Path(path)
        raw = path.read_bytes()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: not JSON ({error})") from None
        for key in ("name", "failure", "cohorts", "grid", "model", "sae", "region", "primary", "statistics"):
            if key not in data:
                raise InputError(f"{path}: the protocol has no '{key}'")
        protocol = cls(path, hashlib.sha256(raw).hexdigest(), data, small)
        protocol.cohorts()  # validates
        return protocol

    # -- what the run uses -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.data["name"] + ("-small" if self.small else "")

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
        out = []
        for entry in self.data["cohorts"]:
            cohort = Cohort(**entry)
            if cohort.role not in ROLES:
                raise InputError(f"{self.path}: cohort {cohort.name} has role {cohort.role!r}, not one of {ROLES}")
            if self.small:
                cohort = Cohort(
                    cohort.name,
                    cohort.population,
                    int(self.data["small"]["cases"][cohort.role]),
                    cohort.seed,
                    cohort.role,
                )
            out.append(cohort)
        seeds = [c.seed for c in out]
        if len(set(seeds)) != len(seeds):
            raise InputError(f"{self.path}: two cohorts share a seed")
        return [c for c in out if role is None or c.role == role]

    def shifted_populations(self) -> list[str]:
        return sorted({c.population for c in self.cohorts("test")})


def git_state(path: Path) -> tuple[str, bool]:
    """(commit that last changed `path`, whether the file is exactly as committed); ('', False) outside git."""
    folder = path.resolve().parent
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", path.name], cwd=folder, capture_output=True, text=True, check=True
        ).stdout
        commit = subprocess.run(
            ["git", "log", "-1", "--format=%H", "--", path.name], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "", False
    return commit, bool(commit) and not status.strip()


def check_committed(protocol: Protocol) -> str:
    """The commit holding the protocol as it is on disk; refuses uncommitted or untracked protocols."""
    commit, clean = git_state(protocol.path)
    if not clean:
        raise ParameterError(
            f"{protocol.path}: the protocol has uncommitted changes (or is not in git); commit it "
            "before running the benchmark it describes"
        )
    return commit


def bind_results(protocol: Protocol, out: Path, commit: str) -> dict:
    """Record (or check) which protocol a results folder belongs to; refuses a different protocol."""
    record = {
        "name": protocol.name,
        "sha256": protocol.sha256,
        "commit": commit,
        "small": protocol.small,
        "path": str(protocol.path),
    }
    path = Path(out) / BINDING
    if path.exists():
        previous = json.loads(path.read_text())
        if previous.get("sha256") != protocol.sha256 or previous.get("small") != protocol.small:
            raise OutputError(
                f"{out}: results were written for protocol sha256 {previous.get('sha256', '?')[:12]} "
                f"(commit {previous.get('commit', '?')[:12]}); this protocol is "
                f"{protocol.sha256[:12]}: a protocol cannot change after results were written; "
                "use another --out"
            )
        return previous
    Path(out).mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
    return record
