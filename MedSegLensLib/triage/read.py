"""Reading a triage worklist (`worklist.json`, written by `triage/worklist.py`) without torch or numpy.

    worklist = read_worklist("out/triage")      # the output folder, or its worklist.json
    entry = worklist.entry("BraTS-GLI-00001-000")  # None when the case was not ranked
    entry["rank"], entry["risk"], entry["top_latents"]

The browser viewer and the Slicer module read worklists through this module; it
imports only the standard library and `errors`, so reading one never loads the
network code. Anything wrong with the file is one `InputError` line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

FORMAT = "medseglens-triage-worklist"
SUPPORTED_VERSIONS = (1,)
FILE_NAME = "worklist.json"
# What every case entry carries (docs/triage.md); the rest (baselines, seconds) is optional to a reader.
CASE_FIELDS = ("case_id", "rank", "risk", "top_latents")


@dataclass(frozen=True)
class Worklist:
    """A worklist's header (format, version, model, sae, scores) and its cases, most at risk first."""

    path: Path
    header: dict
    cases: list[dict]
    _by_id: dict[str, dict] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update((case["case_id"], case) for case in self.cases)

    def entry(self, case_id: str) -> dict | None:
        """The case's entry (rank, risk, top_latents, failure, baselines), or None when it is not in the list."""
        return self._by_id.get(case_id)

    @property
    def sae_sha256(self) -> str | None:
        """The SAE the top latents belong to (None when the header does not say)."""
        return (self.header.get("sae") or {}).get("sha256") or None


def worklist_file(path: str | Path) -> Path:
    """`path` itself if it is a file, else the worklist.json inside the folder `path`."""
    path = Path(path)
    return path / FILE_NAME if path.is_dir() else path


def read_worklist(path: str | Path) -> Worklist:
    """Read and check a worklist (a triage output folder or its worklist.json); InputError in one line otherwise."""
    file = worklist_file(path)
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{file}: no triage worklist here; pick a folder made by 'medseglens triage'") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{file}: cannot read the triage worklist ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InputError(f'{file}: not a triage worklist (no "format": "{FORMAT}"); made by \'medseglens triage\'')
    version = document.get("version")
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
        raise InputError(f"{file}: worklist version {version!r} is not supported (this MedSegLens reads {supported})")
    cases = document.get("cases")
    if not isinstance(cases, list):
        raise InputError(f'{file}: the worklist has no "cases" list')
    for index, case in enumerate(cases):
        missing = [name for name in CASE_FIELDS if not isinstance(case, dict) or name not in case]
        if missing:
            raise InputError(f"{file}: case {index + 1} of the worklist lacks {', '.join(missing)}")
        if not isinstance(case["rank"], int) or not isinstance(case["risk"], (int, float)):
            raise InputError(f"{file}: case {case['case_id']!r} has a rank or risk that is not a number")
    header = {key: value for key, value in document.items() if key != "cases"}
    return Worklist(file, header, sorted(cases, key=lambda case: case["rank"]))
