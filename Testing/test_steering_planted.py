"""Additive steering along an edema latent grows the predicted edema, monotonically, on a planted case.

The planted case has faint edema (FLAIR and T2 barely above the brain), so the
tiny model under-calls part of it. The latent is not hand-picked: it is the SAE
latent that fires most strongly on reference-edema voxels of the training cases.
Steering is confined to the predicted tumour plus 4 mm, where instance
normalisation cannot absorb it as it absorbs a uniform shift.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_support import tiny_training_cohort, trained_tiny_model
from steering_support import UNET_DECODER, train_layer_sae, write_planted_case

from MedSegLensLib.data import read_case
from MedSegLensLib.models import load_model
from MedSegLensLib.steering import RegionSpec, SteeringSpec, open_session

pytestmark = pytest.mark.one_thread  # tiny networks: one torch thread (conftest.py)

EDEMA = 2


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def test_steering_the_edema_latent_grows_predicted_edema_monotonically(workdir):
    torch.set_num_threads(1)
    model = load_model(trained_tiny_model("unet", workdir), device="cpu")
    cases = sorted(p for p in tiny_training_cohort("unet", workdir).iterdir() if p.is_dir())
    sae, rows, labels = train_layer_sae(model, cases, UNET_DECODER, n_latents=16, k=2, folder=workdir / "sae-planted")
    codes = sae.encode(rows)
    edema_latent = int(codes[labels == EDEMA].mean(0).argmax())
    assert codes[labels == EDEMA].mean(0)[edema_latent] > 3 * codes[labels == 0].mean(0)[edema_latent]

    case = read_case(write_planted_case(workdir / "planted", "planted", seed=103, edema_flair=1.05, edema_t2=1.02))
    truth = case.label == EDEMA
    session = open_session(model, workdir / "sae-planted", case)
    region = RegionSpec("tumour-margin", 4)
    edema_voxels, edema_dice = [], []
    for alpha in (0.0, 0.5, 1.0, 2.0, 3.0):
        labels_now = session.steer(SteeringSpec((edema_latent,), (alpha,), "additive", region)).prediction.labels
        edema_voxels.append(int((labels_now == EDEMA).sum()))
        edema_dice.append(dice(labels_now == EDEMA, truth))
    assert edema_voxels[0] < truth.sum(), "the planted case should be under-called before steering"
    assert all(b > a for a, b in zip(edema_voxels, edema_voxels[1:])), edema_voxels
    assert edema_voxels[-1] > 1.3 * edema_voxels[0]
    assert max(edema_dice[1:]) > edema_dice[0] + 0.05, edema_dice
