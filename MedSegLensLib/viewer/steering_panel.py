"""The steering panel's state: latents, mode, strengths, region, Dice before/after, job progress.

Steering itself (encode, edit latents, decode, re-run the rest of the network) runs
in the background worker, which this build does not include yet. Until it does, the
panel shows its controls disabled with that reason, the "before" Dice from the
workspace index, no "after" Dice, and records no steering in provenance. (The
worker already runs the model: see `jobs.py`.)
"""

from __future__ import annotations

from .workspace import Workspace, WorkspaceCase, dice_text

STEERING_MODES = ("additive", "multiplicative", "clamp")
STEERING_REGIONS = ("whole volume", "WT", "TC", "ET")
STRENGTH_LIMIT = 10.0
UNAVAILABLE = "Steering runs in the background worker, which this build does not include yet: the controls are inactive."


class SteeringPanel:
    def __init__(self, server, workspace: Workspace):
        self.state = server.state
        self.workspace = workspace
        s = self.state
        s.steer_available = False
        s.steer_note = UNAVAILABLE
        s.steer_modes = list(STEERING_MODES)
        s.steer_mode = STEERING_MODES[0]
        s.steer_regions = list(STEERING_REGIONS)
        s.steer_region = STEERING_REGIONS[0]
        s.steer_latent_choices = []
        s.steer_latents = []
        s.steer_strength = 0.0
        s.steer_strength_limit = STRENGTH_LIMIT
        s.dice_before = "—"
        s.dice_after = "—"

    def set_case(self, case: WorkspaceCase) -> None:
        self.state.steer_latent_choices = [
            {"value": overlay.latent, "title": f"{overlay.latent} · {overlay.category or overlay.name}"}
            for overlay in case.overlays
            if overlay.latent is not None
        ]
        self.state.steer_latents = []
        self.state.steer_strength = 0.0
        self.state.dice_before = dice_text(case.dice)
        self.state.dice_after = "—"

    def provenance(self) -> dict | None:
        """What steering produced the shown segmentation; None while steering is unavailable."""
        return None
