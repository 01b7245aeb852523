"""The Triage section: the loaded case's line in a triage worklist (`medseglens triage`), as the panel shows it.

    lookup = TriageLookup()
    summary = lookup.summary(folder, loaded_case_id(volume_nodes))   # risk, "3 of 140", failed?, top latents
    problem = lookup.latent_problem(analysis_sae)                     # before showing a top latent's overlay

The worklist is read with `triage.read` (no worker) and again only when its
path or file changes. Nothing here raises: a missing, corrupt or foreign
worklist becomes the one-line `status`, so the rest of the module keeps
working. The module file imports this before the first-use installs, so the
library modules that need them are imported only when a worklist is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MedSegLensError

if TYPE_CHECKING:
    from ..triage.read import Worklist


@dataclass(frozen=True)
class TriageSummary:
    """What the Triage section shows; `status` is one line ("" when the case's line was found)."""

    status: str
    risk: str = ""
    rank: str = ""
    failure: str = ""
    latents: tuple[tuple[str, str, str], ...] = ()  # (latent, excess, description) rows of the top-latent table


def loaded_case_id(volumes: Iterable[Any]) -> str | None:
    """The case id of the first chosen volume: the one Load gave it, else its node name (None when none is chosen)."""
    from ..scene.case_volumes import CASE_ATTRIBUTE

    node = next((volume for volume in volumes if volume is not None), None)
    if node is None:
        return None
    return node.GetAttribute(CASE_ATTRIBUTE) or node.GetName()


def chosen(path: str | os.PathLike | None) -> bool:
    """Whether a path field holds a path (an empty field reads as "" or ".")."""
    return path is not None and str(path) not in ("", ".")


def _cases(worklist: Worklist) -> str:
    return f"{len(worklist.cases)} case" + ("" if len(worklist.cases) == 1 else "s")


class TriageLookup:
    """The worklist at the chosen path, read once per path and file version."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._read: Worklist | MedSegLensError | None = None

    def worklist(self, path: str | os.PathLike | None) -> Worklist | None:
        """The worklist at `path` (None when no path is chosen); raises its one-line error when it cannot be read."""
        if not chosen(path):
            self._key, self._read = None, None
            return None
        from ..triage.read import read_worklist, worklist_file

        file = worklist_file(path)
        try:
            stamp = file.stat().st_mtime_ns
        except OSError:
            stamp = None
        key = (str(Path(path)), stamp)
        if key != self._key:
            self._key = key
            try:
                self._read = read_worklist(path)
            except MedSegLensError as exc:
                self._read = exc
        if isinstance(self._read, MedSegLensError):
            raise self._read
        return self._read

    def summary(self, path: str | os.PathLike | None, case_id: str | None) -> TriageSummary:
        """The case's risk, rank, reference failure and top latents, or one line saying why there are none."""
        try:
            worklist = self.worklist(path)
        except (MedSegLensError, ImportError) as exc:  # ImportError: a package the reader needs is missing here
            return TriageSummary(f"Worklist not read: {exc}")
        if worklist is None:
            return TriageSummary("Choose a triage output folder (made by 'medseglens triage').")
        if case_id is None:
            return TriageSummary(f"Load a case to see its line in the worklist ({_cases(worklist)}).")
        entry = worklist.entry(case_id)
        if entry is None:
            return TriageSummary(f"{case_id} is not in this worklist ({_cases(worklist)}).")
        failure = entry.get("failure")
        return TriageSummary(
            status="",
            risk=f"{entry['risk']:.3f}",
            rank=f"{entry['rank']} of {len(worklist.cases)}",
            failure="unknown (no reference)" if failure is None else ("failed" if failure else "did not fail"),
            latents=tuple(
                (str(top["latent"]), f"{top.get('excess', 0.0):.3f}", str(top.get("description") or ""))
                for top in entry["top_latents"]
            ),
        )

    def latent_problem(self, path: str | os.PathLike | None, sae: dict | None) -> str | None:
        """Why a top latent of the worklist cannot be overlaid on the analysed case (None when it can).

        `sae`: the analysis's SAE record (`sha256`...), None before Apply with an SAE. The latents of a worklist
        made with another SAE are other features, so they are refused rather than shown under the same number.
        """
        if sae is None:
            return "Apply with an SAE folder first: a top latent's map comes from the case's codes."
        try:
            worklist = self.worklist(path)
        except (MedSegLensError, ImportError) as exc:
            return f"Worklist not read: {exc}"
        if worklist is None:
            return "Choose a triage output folder first."
        made_with, analysed = worklist.sae_sha256, sae.get("sha256")
        if made_with and analysed and made_with != analysed:
            return (
                f"This worklist was made with another SAE ({made_with[:12]}, the case was analysed with "
                f"{analysed[:12]}): its latent numbers are not this SAE's."
            )
        return None
