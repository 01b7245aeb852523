"""A viewer workspace with a real trained tiny model, its SAE and an interpretation file (no tests here).

Built from the Slicer-module test assets (`slicer_support.slicer_assets`): a
tiny U-Net trained on a tiny cohort, a 16-latent SAE on its decoder layer with
latent scales, the latent that fires most on edema (found from the training
rows), and a planted case whose edema the model under-calls. The workspace
holds two cases: that case (RAS voxel order, population "adult") and its copy
with the first voxel axis reversed ("ssa", the failure case, opened first).
`latents.json` follows `medseglens interpret`'s format (version 1) and names
the edema latent "edema"; every other latent is "background/other".
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from slicer_support import slicer_assets
from steering_support import UNET_DECODER

from MedSegLensLib.viewer.workspace import ModelEntry, SaeEntry, Workspace, WorkspaceCase, write_workspace_index

N_LATENTS = 16
EDEMA_DESCRIPTION = "peritumoural edema (planted test latent)"


def write_latents_json(path: Path, edema_latent: int) -> Path:
    latents = [
        {
            "index": j,
            "active": True,
            "category": "edema" if j == edema_latent else "background/other",
            "confidence": 0.8 if j == edema_latent else 0.1,
            "description": EDEMA_DESCRIPTION if j == edema_latent else f"latent {j} of the test SAE",
        }
        for j in range(N_LATENTS)
    ]
    data = {
        "format": "medseglens-latents",
        "version": 1,
        "sae": {"layer": UNET_DECODER, "n_latents": N_LATENTS, "k": 2, "kind": "topk"},
        "latents": latents,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_steering_workspace(root: Path, assets_root: Path) -> tuple[Workspace, int]:
    """The workspace under `root` and the edema latent's index."""
    assets = slicer_assets(assets_root)
    shutil.copytree(assets.model, root / "models" / "unet")
    shutil.copytree(assets.sae, root / "saes" / "unet-dec")
    write_latents_json(root / "interpret" / "unet-dec" / "latents.json", assets.edema_latent)
    cases = []
    for population, case_id, folder, failure in (
        ("adult", "planted", assets.case, False),
        ("ssa", "planted-las", assets.flipped, True),
    ):
        target = root / "cohorts" / population / case_id
        target.mkdir(parents=True)
        for path in folder.glob("*.nii.gz"):
            shutil.copy(path, target / path.name.replace(folder.name, case_id, 1))
        cases.append(
            WorkspaceCase(
                case_id=case_id, population=population, folder=f"cohorts/{population}/{case_id}", failure=failure
            )
        )
    models = [
        ModelEntry("unet", "models/unet", (SaeEntry("unet-dec", "saes/unet-dec", "interpret/unet-dec/latents.json"),))
    ]
    workspace = Workspace(
        root=root, cases=cases, default_model="models/unet", default_sae="saes/unet-dec", models=models
    )
    write_workspace_index(workspace)
    return workspace, assets.edema_latent


def write_brain_steering_workspace(root: Path, assets_root: Path) -> tuple[Workspace, str, int]:
    """The same model, SAE and interpretation with one 2 mm synthetic brain (`medseglens synth`'s generator,
    adult, with a tumour) as the only case: the viewer's analysis runs the tiny model on a brain-sized volume.
    Returns the workspace, the case id and the edema latent."""
    from MedSegLensLib.synth.cohort import generate_cohort

    assets = slicer_assets(assets_root)
    shutil.copytree(assets.model, root / "models" / "unet")
    shutil.copytree(assets.sae, root / "saes" / "unet-dec")
    write_latents_json(root / "interpret" / "unet-dec" / "latents.json", assets.edema_latent)
    cohort = generate_cohort("adult", 1, 11, root / "cohorts" / "adult", spacing=2.0, progress=False)
    case_id = cohort.case_ids[0]
    cases = [WorkspaceCase(case_id=case_id, population="adult", folder=f"cohorts/adult/{case_id}", failure=True)]
    sae = SaeEntry("unet-dec", "saes/unet-dec", "interpret/unet-dec/latents.json")
    workspace = Workspace(
        root=root,
        cases=cases,
        default_model="models/unet",
        default_sae="saes/unet-dec",
        models=[ModelEntry("unet", "models/unet", (sae,))],
    )
    write_workspace_index(workspace)
    return workspace, case_id, assets.edema_latent
