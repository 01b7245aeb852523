"""Pre-registered protocols: a JSON file committed before the run it describes, and results bound to it.

A benchmark (steering, triage) fixes everything its result depends on in a
protocol file: cohorts with fresh seeds and their roles, sizes, selection rules,
the primary comparison. `check_committed` refuses a protocol that git does not
hold unchanged; `bind_results` refuses a results folder written for another
version of the protocol (its sha256 and commit are stored beside the results).
Each benchmark subclasses `FrozenProtocol` with the keys it requires and the
cohort roles it knows.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

from .errors import InputError, OutputError, ParameterError
from .fileio import write_json_atomic

BINDING = "protocol.json"
P = TypeVar("P", bound="FrozenProtocol")


@dataclass(frozen=True)
class FrozenProtocol:
    """The parsed protocol file; `small` marks a reduced variant for tests (its results bind separately)."""

    path: Path
    sha256: str
    data: dict
    small: bool = False

    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "cohorts")
    ROLES: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def load(cls: type[P], path: str | Path, small: bool = False) -> P:
        """Parse and check the file: required keys, every cohort's role known, no two cohorts sharing a seed
        (they would make the same case ids)."""
        path = Path(path)
        raw = path.read_bytes()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: not JSON ({error})") from None
        for key in cls.REQUIRED:
            if key not in data:
                raise InputError(f"{path}: the protocol has no '{key}'")
        for cohort in data["cohorts"]:
            if cohort.get("role") not in cls.ROLES:
                raise InputError(
                    f"{path}: cohort {cohort.get('name')} has role {cohort.get('role')!r}, not one of {cls.ROLES}"
                )
        seeds = [cohort["seed"] for cohort in data["cohorts"]]
        if len(set(seeds)) != len(seeds):
            raise InputError(f"{path}: two cohorts share a seed")
        return cls(path, hashlib.sha256(raw).hexdigest(), data, small)

    @property
    def name(self) -> str:
        return self.data["name"] + ("-small" if self.small else "")


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


def check_committed(protocol: FrozenProtocol) -> str:
    """The commit holding the protocol as it is on disk; refuses uncommitted or untracked protocols."""
    commit, clean = git_state(protocol.path)
    if not clean:
        raise ParameterError(
            f"{protocol.path}: the protocol has uncommitted changes (or is not in git); commit it "
            "before running the benchmark it describes"
        )
    return commit


def bind_results(protocol: FrozenProtocol, out: Path, commit: str) -> dict:
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
