"""Training: the loss falls for both backbones, runs are deterministic, an interrupted run resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest
from models_support import one_thread, write_cohort  # noqa: F401 (fixtures)

from MedSegLensLib.errors import CancelledError, CompatibilityError, OutputError
from MedSegLensLib.models import TrainingSettings, labelled_cases, load_model, tiny_config, train_model
from MedSegLensLib.models.checkpoint import has_checkpoint
from MedSegLensLib.models.evaluation import REGIONS, brats_scores


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return labelled_cases([write_cohort(tmp_path_factory.mktemp("cohort"), 5, seed=2)])


@pytest.mark.parametrize("arch", ["unet", "segformer"])
def test_loss_falls_and_validation_dice_is_reported(tmp_path, cohort, arch):
    updates = []
    settings = TrainingSettings(epochs=6, seed=0, val_fraction=0.2, learning_rate=1e-2)
    result = train_model(tiny_config(arch), cohort, tmp_path / "model", settings, progress=updates.append, device="cpu")
    losses = [record["loss"] for record in result.history]
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0], losses
    validations = [u for u in updates if u.phase == "validate"]
    assert len(validations) == 6 and [u.epoch for u in validations] == [1, 2, 3, 4, 5, 6]
    steps = [u for u in updates if u.phase == "train"]
    assert steps[-1].epoch == 6 and steps[-1].step == steps[-1].steps_per_epoch == 2  # 4 training cases, batch 2
    model = load_model(tmp_path / "model", device="cpu")
    # the last validation scored the saved weights on the held-out case: segmenting it again gives the same Dice
    (held_out,) = [files for files in cohort if files.case_id in model.provenance["val_cases"]]
    case = held_out.load()
    scores = brats_scores(model.predict(case).labels, case.label, with_hd95=False, structures=REGIONS)
    assert validations[-1].val_dice == pytest.approx(np.mean([scores[f"dice_{r}"] for r in REGIONS]), abs=1e-6)
    assert model.fingerprint == result.fingerprint and not has_checkpoint(tmp_path / "model")
    assert model.config.spacing == (2.0, 2.0, 2.0), "the model spacing comes from the data"
    assert (
        model.provenance["train_cases"]
        and model.provenance["val_cases"]
        and model.provenance["history"] == result.history
    )


def test_same_seed_same_weights_and_resume_matches_an_uninterrupted_run(tmp_path, cohort):
    settings = TrainingSettings(epochs=3, seed=7, val_fraction=0.0, learning_rate=5e-3)
    config = tiny_config("unet")
    first = train_model(config, cohort, tmp_path / "a", settings, device="cpu")
    second = train_model(config, cohort, tmp_path / "b", settings, device="cpu")
    assert first.fingerprint == second.fingerprint, "same seed, same data: same weights (bit for bit)"
    other = train_model(
        config,
        cohort,
        tmp_path / "c",
        TrainingSettings(epochs=3, seed=8, val_fraction=0.0, learning_rate=5e-3),
        device="cpu",
    )
    assert other.fingerprint != first.fingerprint

    def stop_in_epoch_two(update):
        if update.epoch == 2 and update.step == 1:
            raise CancelledError("stopped by the test")

    with pytest.raises(CancelledError):
        train_model(config, cohort, tmp_path / "d", settings, progress=stop_in_epoch_two, device="cpu")
    assert has_checkpoint(tmp_path / "d") and not (tmp_path / "d" / "model.json").exists()
    with pytest.raises(OutputError, match="pass --resume"):
        train_model(config, cohort, tmp_path / "d", settings, device="cpu")
    with pytest.raises(CompatibilityError, match="other settings"):
        train_model(
            config,
            cohort,
            tmp_path / "d",
            TrainingSettings(epochs=4, seed=7, val_fraction=0.0, learning_rate=5e-3),
            resume=True,
            device="cpu",
        )
    resumed = train_model(config, cohort, tmp_path / "d", settings, resume=True, device="cpu")
    assert resumed.fingerprint == first.fingerprint, "resumed run differs from the uninterrupted one"
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    with pytest.raises(OutputError, match="already holds a trained model"):
        train_model(config, cohort, tmp_path / "d", settings, device="cpu")
