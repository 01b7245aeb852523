"""The triage view (issue 17): cases in risk order and the "Why" panel of the shown case.

A workspace whose `workspace.json` names a worklist (`"triage"`: a `medseglens triage` output folder or its
`worklist.json`, read with `triage.read`) opens with its case list in the worklist's rank order (rank 1 first,
the risk beside each case; cases the worklist does not rank follow in the index's order) and on the top-ranked
case. The "Why" panel (`why` state) gives the shown case's rank and risk, what the reference says when the
worklist knows it, the baseline scores measured in the same triage pass and the top contributing latents with
their descriptions (the workspace's interpretation's where the worklist has none); the page shows a top
latent's map through the latent browser's own path. Top latents of a worklist made with another SAE than the
one the viewer analyses with are listed but not clickable: their numbers are another dictionary's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .workspace import Workspace, WorkspaceCase

if TYPE_CHECKING:
    from ..triage.read import Worklist

# The worklist's baseline scores (docs/triage.md), in the order the panel lists them.
BASELINE_LABELS = {
    "entropy": "softmax entropy",
    "max_prob": "1 − max probability",
    "tta_volume_cv": "TTA volume CV",
    "volume_outlier": "volume outlier",
    "known_population": "known population",
}


def load_worklist(workspace: Workspace) -> Worklist | None:
    """The workspace's worklist (None when `workspace.json` names none); a bad one is one InputError line."""
    if workspace.triage is None:
        return None
    # imported here: the triage package's __init__ loads torch and MONAI, which the viewer's server never needs
    from ..triage.read import read_worklist

    return read_worklist(workspace.resolve(workspace.triage, "triage worklist"))


def triage_order(cases: list[WorkspaceCase], worklist: Worklist | None) -> list[WorkspaceCase]:
    """Ranked cases by rank (1 first), then the unranked ones in the index's order."""
    if worklist is None:
        return list(cases)
    ranked = [case for case in cases if worklist.entry(case.case_id) is not None]
    ranked.sort(key=lambda case: worklist.entry(case.case_id)["rank"])
    return ranked + [case for case in cases if worklist.entry(case.case_id) is None]


def default_case(workspace: Workspace, worklist: Worklist | None) -> WorkspaceCase | None:
    """The case the viewer opens: the top-ranked one with a worklist, else the first failure, else the first."""
    cases = triage_order(workspace.cases, worklist)
    if worklist is not None and cases and worklist.entry(cases[0].case_id) is not None:
        return cases[0]
    return next((case for case in cases if case.failure), cases[0] if cases else None)


def _number(value) -> str:
    return "—" if value is None else f"{float(value):.3g}"


class TriagePanel:
    """The `triage_on`, `why`, `why_note` and `why_clickable` state; the case list's rank and risk cells."""

    def __init__(self, state, worklist: Worklist | None):
        self.state = state
        self.worklist = worklist
        self.foreign_sae: str | None = None  # set once an analysis shows the worklist's SAE is not the viewer's
        state.triage_on = worklist is not None
        state.why = None
        state.why_note = ""
        state.why_clickable = True

    def case_cells(self, case: WorkspaceCase) -> dict:
        """Rank and risk for the case list (None for both without a worklist or an unranked case)."""
        entry = self.worklist.entry(case.case_id) if self.worklist is not None else None
        return {"rank": entry["rank"] if entry else None, "risk": f"{entry['risk']:.3f}" if entry else None}

    def show(
        self, case: WorkspaceCase, map_name: Callable[[int], str], describe: Callable[[int], str] = lambda j: ""
    ) -> None:
        """Fill the panel for `case`; `map_name(latent)` is the latent browser's row name for that latent and
        `describe(latent)` the interpretation's description, for latents the worklist gives none."""
        if self.worklist is None:
            return
        entry = self.worklist.entry(case.case_id)
        if entry is None:
            self.state.why = None
            self.state.why_note = f"{case.case_id} is not in the worklist ({len(self.worklist.cases)} cases)."
            return
        failure = entry.get("failure")
        meanings = self.worklist.header.get("scores") or {}
        baselines = entry.get("baselines") or {}
        self.state.why = {
            "case_id": case.case_id,
            "rank": entry["rank"],
            "of": len(self.worklist.cases),
            "risk": f"{entry['risk']:.3f}",
            "failure": "unknown" if failure is None else ("failed" if failure else "did not fail"),
            "baselines": [
                {"key": key, "label": label, "value": _number(baselines[key]), "meaning": str(meanings.get(key, ""))}
                for key, label in BASELINE_LABELS.items()
                if key in baselines
            ],
            "latents": [
                {
                    "latent": int(top["latent"]),
                    "name": map_name(int(top["latent"])),
                    "excess": _number(top.get("excess")),
                    "description": str(top.get("description") or describe(int(top["latent"])) or "no description"),
                }
                for top in entry["top_latents"]
            ],
        }
        self._publish_note()

    def check_sae(self, analysed_sha256: str | None) -> None:
        """Compare the worklist's SAE with the one the viewer analysed the case with (`encode` result)."""
        made_with = self.worklist.sae_sha256 if self.worklist is not None else None
        self.foreign_sae = made_with if made_with and analysed_sha256 and made_with != analysed_sha256 else None
        self._publish_note()

    def _publish_note(self) -> None:
        self.state.why_clickable = self.foreign_sae is None
        self.state.why_note = (
            f"These top latents are of another SAE ({self.foreign_sae[:12]}) than the viewer's: not shown."
            if self.foreign_sae
            else ""
        )
