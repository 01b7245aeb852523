"""Tiny assets for the Slicer-module and latent-job tests (no tests here).

A tiny U-Net trained on a tiny cohort, an SAE on its decoder layer with the
latents' typical activations, the latent that fires most on edema (found from
the training rows, not hand-picked), and a planted case whose edema is so faint
that the model under-calls it: steering that latent must grow the edema.
The `flipped` copy holds the same case with its first voxel axis reversed, so
geometry mistakes show up as misplaced voxels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from models_support import trained_tiny_model
from steering_support import UNET_DECODER, train_layer_sae, write_planted_case

EDEMA = 2


@dataclass(frozen=True)
class Assets:
    model: Path
    sae: Path
    edema_latent: int
    case: Path  # planted case, RAS voxel order
    flipped: Path  # the same case, first axis reversed (LAS)


_BUILT: dict[Path, Assets] = {}


def flipped_copy(case_dir: Path, out_root: Path) -> Path:
    """Every file of a case with its first voxel axis reversed; the affine keeps each voxel's RAS position."""
    out = out_root / case_dir.name
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(case_dir.glob("*.nii.gz")):
        image = nib.load(str(path))
        array = np.asarray(image.dataobj)[::-1].copy()
        flip = np.eye(4)
        flip[0, 0], flip[0, 3] = -1.0, array.shape[0] - 1
        affine = image.affine @ flip
        copy = nib.Nifti1Image(array, affine)
        copy.set_qform(affine, code=1)
        copy.set_sform(affine, code=1)
        nib.save(copy, str(out / path.name))
    return out


def slicer_assets(root: Path) -> Assets:
    """Build (once per folder) the tiny model, its SAE and the planted cases."""
    if root in _BUILT:
        return _BUILT[root]
    import torch

    from MedSegLensLib.models import load_model

    model_dir = trained_tiny_model("unet", root)
    model = load_model(model_dir, device="cpu")
    cases = sorted(p for p in (model_dir.parent / "cohort-unet").iterdir() if p.is_dir())
    sae, rows, labels = train_layer_sae(model, cases, UNET_DECODER, n_latents=16, k=2, folder=root / "sae")
    with torch.no_grad():
        codes = sae.encode(rows)
    edema_latent = int(codes[labels == EDEMA].mean(0).argmax())
    case = write_planted_case(root / "planted", "planted", seed=103, edema_flair=1.05, edema_t2=1.02)
    assets = Assets(model_dir, root / "sae", edema_latent, case, flipped_copy(case, root / "flipped"))
    _BUILT[root] = assets
    return assets


def assets_fixture(name: str):
    """A module-scoped fixture with the assets built once per session under folder `name` (torch on one thread).

    Test modules that only read the assets share them by passing the same name (they are built once).
    """

    @pytest.fixture(scope="module")
    def assets(tmp_path_factory) -> Assets:
        import torch

        torch.set_num_threads(1)
        root = tmp_path_factory.getbasetemp() / name
        root.mkdir(exist_ok=True)
        return slicer_assets(root)

    return assets


def write_test_worklist(out: Path, cases: list[dict], sae_sha256: str = "") -> Path:
    """A triage output folder written by the triage package's own writer, with the case rows given.

    Each row needs case_id and risk (top_latents, failure and population are optional); ranks follow the risk.
    The reference record is a minimal one: readers of the worklist never open it.
    """
    from MedSegLensLib.triage.reference import BASELINES, Reference, ReferenceSettings
    from MedSegLensLib.triage.worklist import write_worklist

    rows = [
        {
            "case_id": case["case_id"],
            "population": case.get("population", "adult"),
            "risk": case["risk"],
            "top_latents": case.get("top_latents", []),
            "baselines": {name: 0.0 for name in BASELINES},
            "failure": case.get("failure"),
            "seconds": {"sae_risk": 0.1},
        }
        for case in cases
    ]
    rows.sort(key=lambda row: (-row["risk"], row["case_id"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    reference = Reference(ReferenceSettings(), [], [], 0.0, [], (0.0, 1.0), {}, [], [], [], 0.0, sae_sha256=sae_sha256)
    header = {
        "model": {"fingerprint": "f" * 64, "architecture": "unet"},
        "sae": {"layer": "model.1", "sha256": sae_sha256, "n_latents": 16},
    }
    return write_worklist(out, rows, header, reference)
