"""Scoring every candidate intervention on one case: Dice per region, predicted volumes, prediction entropy.

Each candidate's segmentation is scored against the reference (Dice of WT, TC,
ET, ED) and described without labels (predicted volume per region, mean
prediction entropy inside the steering region), so oracle and label-free
selections can be made afterwards from the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...data import Case
from ...metrics.scores import STRUCTURES, dice
from ...steering_contract import RegionSpec, SteeringSpec
from ..region import region_mask
from ..session import SteeringSession
from .candidates import Candidate

SCORED = ("WT", "TC", "ET", "ED")


@dataclass
class Outcome:
    """What one segmentation scores: Dice per region (None without reference), volume (ml), region entropy."""

    dice: dict[str, float] | None
    volume_ml: dict[str, float]
    entropy: float

    def to_json(self) -> dict:
        return {"dice": self.dice, "volume_ml": self.volume_ml, "entropy": self.entropy}


def outcome(labels: np.ndarray, logits: torch.Tensor, case: Case, region: np.ndarray | None) -> Outcome:
    voxel_ml = float(np.prod(case.grid.spacing)) / 1000.0
    masks = {name: np.isin(labels, values) for name, values in STRUCTURES.items() if name in SCORED}
    scores = None
    if case.label is not None:
        scores = {name: dice(mask, np.isin(case.label, STRUCTURES[name])) for name, mask in masks.items()}
    inside = logits[0][:, torch.from_numpy(region)] if region is not None and region.any() else logits[0].flatten(1)
    log_p = torch.log_softmax(inside, dim=0)
    entropy = -(log_p.exp() * log_p).sum(0)
    return Outcome(scores, {name: float(mask.sum() * voxel_ml) for name, mask in masks.items()}, float(entropy.mean()))


class CaseEvaluator:
    """Runs candidates on one case's sessions (one per SAE layer; baselines use the first)."""

    def __init__(self, sessions: list[SteeringSession], region: RegionSpec):
        self.sessions = sessions
        self.region = region
        first = sessions[0]
        self.mask = region_mask(region, first.prepared.grid, first.predicted_tumour())
        self.mask_t = None if self.mask is None else torch.from_numpy(self.mask)

    @property
    def case(self) -> Case:
        return self.sessions[0].case

    def unsteered(self) -> Outcome:
        session = self.sessions[0]
        return outcome(session.unsteered().labels, session.logits, self.case, self.mask)

    def run(self, candidate: Candidate) -> Outcome:
        session = self.sessions[candidate.sae_index]
        if candidate.spec is not None:
            result = session.steer(candidate.spec)
            return outcome(result.prediction.labels, result.logits, self.case, self.mask)
        if candidate.direction is not None:
            result = session.steer_directions(candidate.direction[None], [candidate.amount], self.region)
            return outcome(result.prediction.labels, result.logits, self.case, self.mask)
        logits = session.logits.clone()
        bias = torch.tensor(candidate.bias, dtype=logits.dtype).view(-1, 1, 1, 1)
        if self.mask_t is None:
            logits[0] += bias
        else:
            logits[0] += bias * self.mask_t
        prediction = session.model.to_prediction(logits, session.prepared)
        return outcome(prediction.labels, logits, self.case, self.mask)

    def dose(self, latents: dict[str, list[tuple[int, int]]], alphas) -> list[dict]:
        """Failure-region response to single latents of each group over signed strengths (first SAE)."""
        rows = []
        for group, chosen in latents.items():
            for latent, sign in chosen:
                for alpha in alphas:
                    spec = SteeringSpec((latent,), (sign * alpha,), "additive", self.region)
                    result = self.sessions[0].steer(spec)
                    scored = outcome(result.prediction.labels, result.logits, self.case, self.mask)
                    rows.append({"group": group, "latent": latent, "alpha": alpha, **scored.to_json()})
        return rows
