"""A real nnU-Net v2 trained-model folder, made by nnU-Net's own code on a tiny raw dataset.

Fingerprint extraction, experiment planning (with a planner shrunk to a few
features per stage so it runs on a CPU), `nnUNetTrainer.initialize()`, two of
its own training steps and its own `save_checkpoint`: the folder has exactly
the layout `nnUNetv2_train` leaves behind (dataset.json, plans.json,
fold_0/checkpoint_final.pth). The dataset is region-based like nnU-Net's BraTS
conversion (Dataset137): raw labels 1 edema, 2 non-enhancing core, 3 enhancing,
trained as the regions whole tumour, tumour core, enhancing tumour.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch
from datafiles import smooth_image, tumour_labels, write_nifti

DATASET = "Dataset901_TinyGlioma"
CHANNEL_NAMES = {"0": "T1", "1": "T1ce", "2": "T2", "3": "Flair"}
# BraTS label values (1 NCR, 2 ED, 3 ET) -> this dataset's raw values (Dataset137's convention)
BRATS_TO_RAW = {0: 0, 1: 2, 2: 1, 3: 3}
REGION_LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
LPS_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])
CASE_SHAPE = (20, 22, 18)


def lps_affine(origin=(30.0, 20.0, -5.0)) -> np.ndarray:
    """A BraTS-like affine: voxels stored left-posterior-superior, 1 mm."""
    affine = LPS_AFFINE.copy()
    affine[:3, 3] = origin
    return affine


def write_raw_dataset(raw_root: Path, cases: int, seed: int) -> Path:
    """nnU-Net's raw format: imagesTr/<case>_000{0..3}.nii.gz, labelsTr/<case>.nii.gz, dataset.json."""
    rng = np.random.default_rng(seed)
    folder = raw_root / DATASET
    for index in range(cases):
        case = f"tiny_{index:03d}"
        centre = [s / 2 + rng.uniform(-2, 2) for s in CASE_SHAPE]
        brats = tumour_labels(CASE_SHAPE, centre=centre, radii=(6, 5, 4))
        for channel in range(4):
            image = smooth_image(CASE_SHAPE, rng, offset=100.0 + 40 * channel)
            image[brats > 0] += 30.0 * (channel + 1) * (brats[brats > 0] / 3.0)
            image[:2] = 0.0  # a zero margin, so nnU-Net's crop-to-nonzero has work to do
            write_nifti(folder / "imagesTr" / f"{case}_{channel:04d}.nii.gz", image, lps_affine())
        raw = np.vectorize(BRATS_TO_RAW.get)(brats).astype(np.uint8)
        write_nifti(folder / "labelsTr" / f"{case}.nii.gz", raw, lps_affine())
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    generate_dataset_json(str(folder), CHANNEL_NAMES, REGION_LABELS, cases, ".nii.gz", regions_class_order=[1, 2, 3])
    return folder


def build_nnunet_model(root: Path, cases: int = 3, seed: int = 0, train_steps: int = 2) -> Path:
    """Run nnU-Net's planning and trainer; return the trained-model folder "
    "(…/nnUNetTrainer__nnUNetPlans__3d_fullres)."""
    for name in ("raw", "preprocessed", "results"):
        (root / name).mkdir(parents=True, exist_ok=True)
        os.environ[f"nnUNet_{name}"] = str(root / name)
    write_raw_dataset(root / "raw", cases, seed)

    from batchgenerators.utilities.file_and_folder_operations import load_json, save_json
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    extractor = DatasetFingerprintExtractor(DATASET, num_processes=1)
    extractor.num_foreground_voxels_for_intensitystats = 30_000  # nnU-Net samples 10^8 voxels by default: minutes
    extractor.run()

    class TinyPlanner(ExperimentPlanner):
        """nnU-Net's planner with 4 base features (max 16), so the network is small enough for a CPU test."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.UNet_base_num_features = 4
            self.UNet_max_features_3d = 16

    TinyPlanner(DATASET).plan_experiment()
    plans = load_json(str(root / "preprocessed" / DATASET / "nnUNetPlans.json"))
    dataset_json = load_json(str(root / "raw" / DATASET / "dataset.json"))
    _preprocess(root, plans, dataset_json)

    torch.manual_seed(seed)
    trainer = nnUNetTrainer(
        {**plans, "continue_training": False}, "3d_fullres", 0, dataset_json, device=torch.device("cpu")
    )
    trainer.initialize()
    _one_epoch(trainer, train_steps, np.random.default_rng(seed))
    out = Path(trainer.output_folder_base)
    (out / "fold_0").mkdir(parents=True, exist_ok=True)
    save_json(plans, str(out / "plans.json"), sort_keys=False)  # as nnUNetTrainer.on_train_start does
    save_json(dataset_json, str(out / "dataset.json"), sort_keys=False)
    trainer.save_checkpoint(str(out / "fold_0" / "checkpoint_final.pth"))
    shutil.rmtree(root / "preprocessed" / DATASET / "gt_segmentations", ignore_errors=True)
    return out


def _preprocess(root: Path, plans: dict, dataset_json: dict) -> None:
    """nnU-Net's own preprocessing of each training case, one by one (its `run` spawns a process pool)."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(plans)
    configuration = plans_manager.get_configuration("3d_fullres")
    out = root / "preprocessed" / DATASET / configuration.data_identifier
    out.mkdir(parents=True, exist_ok=True)
    raw = root / "raw" / DATASET
    for label in sorted((raw / "labelsTr").glob("*.nii.gz")):
        case = label.name[: -len(".nii.gz")]
        images = [str(raw / "imagesTr" / f"{case}_{c:04d}.nii.gz") for c in range(4)]
        DefaultPreprocessor(verbose=False).run_case_save(
            str(out / case), images, str(label), plans_manager, configuration, dataset_json
        )


def _one_epoch(trainer, steps: int, rng: np.random.Generator) -> None:
    """The body of `nnUNetTrainer.run_training` for one epoch, fed our batches instead of its data loaders.

    Its epoch-end bookkeeping puts numpy scalars into the checkpoint's log, as a real training run does.
    """
    trainer.on_epoch_start()
    trainer.on_train_epoch_start()
    trainer.on_train_epoch_end([trainer.train_step(_training_batch(trainer, rng)) for _ in range(steps)])
    with torch.no_grad():
        trainer.on_validation_epoch_start()
        trainer.on_validation_epoch_end([trainer.validation_step(_training_batch(trainer, rng))])
    trainer.on_epoch_end()


def _training_batch(trainer, rng: np.random.Generator) -> dict:
    """A batch in the trainer's own layout: data (B, 4, *patch) and region targets for each deep-supervision scale."""
    patch = tuple(trainer.configuration_manager.patch_size)
    data = torch.from_numpy(rng.normal(size=(2, 4, *patch)).astype(np.float32))
    brats = torch.from_numpy(np.stack([tumour_labels(patch, radii=[s / 3 for s in patch])] * 2)).long()
    raw = torch.tensor([BRATS_TO_RAW[v] for v in range(4)])[brats]
    regions = torch.stack([(raw >= 1), (raw >= 2), (raw == 3)], dim=1).float()
    targets = []
    for scale in trainer._get_deep_supervision_scales():
        size = [max(1, round(p * s)) for p, s in zip(patch, scale)]
        targets.append(torch.nn.functional.interpolate(regions, size=size, mode="nearest"))
    return {"data": data, "target": targets}
