"""A tiny viewer workspace made of real NIfTI files, shared by the viewer test modules.

Two cases in two populations. Each has four modalities with different contrasts,
a reference segmentation (BraTS labels around a tumour centre), a model prediction
and two latent maps: Gaussian blobs centred away from the tumour, so a test can
tell overlay pixels from segmentation pixels. The second case is stored with
flipped voxel axes (LPS order) to exercise the geometry path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from MedSegLensLib.data import Grid, write_volume
from MedSegLensLib.viewer.workspace import (
    ModelEntry,
    Overlay,
    SaeEntry,
    Workspace,
    WorkspaceCase,
    write_workspace_index,
)

SHAPE = (32, 36, 28)
SPACING = (2.0, 2.0, 2.5)
MODALITY_GAIN = {"t1n": 1.0, "t1c": 1.3, "t2w": 0.6, "t2f": 0.8}


@dataclass(frozen=True)
class CaseSpec:
    case_id: str
    population: str
    tumour_voxel: tuple[int, int, int]
    blobs: dict[str, tuple[int, int, int]]
    flipped: bool
    dice: dict
    failure: bool


CASES = (
    CaseSpec(
        "CASE-ADULT-001",
        "adult",
        (12, 20, 14),
        {"latent-7": (22, 12, 14), "latent-12": (10, 10, 8)},
        False,
        {"ET": 0.91, "TC": 0.93, "WT": 0.9},
        False,
    ),
    CaseSpec(
        "CASE-SSA-002",
        "ssa",
        (20, 14, 10),
        {"latent-7": (9, 24, 16), "latent-12": (22, 26, 18)},
        True,
        {"ET": 0.31, "TC": 0.42, "WT": 0.38},
        True,
    ),
)


def canonical_grid() -> Grid:
    """The RAS-ordered grid every case covers; test positions are canonical voxels of it."""
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = (-30.0, -34.0, -30.0)
    return Grid(SHAPE, affine)


def stored_grid(spec: CaseSpec) -> Grid:
    """The grid written to disk: for a flipped case, LPS voxel order over the same physical box."""
    grid = canonical_grid()
    if not spec.flipped:
        return grid
    to_canonical = np.array([[-1, 0, 0, SHAPE[0] - 1], [0, -1, 0, SHAPE[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    return Grid(SHAPE, grid.affine @ to_canonical)


def ras_of(voxel) -> np.ndarray:
    """Physical (RAS, mm) position of a canonical voxel."""
    return (canonical_grid().affine @ np.array([*voxel, 1.0]))[:3]


def _distance(centre) -> np.ndarray:
    i, j, k = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    return np.sqrt((i - centre[0]) ** 2 + (j - centre[1]) ** 2 + ((k - centre[2]) * SPACING[2] / SPACING[0]) ** 2)


def _labels(spec: CaseSpec, shrink: float = 0.0) -> np.ndarray:
    r = _distance(spec.tumour_voxel)
    label = np.zeros(SHAPE, np.uint8)
    label[r < 6.0 - shrink] = 2
    label[r < 3.5 - shrink] = 3
    label[r < 2.0 - shrink] = 1
    return label


def _modality(spec: CaseSpec, modality: str, label: np.ndarray) -> np.ndarray:
    centre = np.array(SHAPE) / 2.0
    r = _distance(centre) / 13.0
    brain = (r < 1.0).astype(np.float32)
    gain = MODALITY_GAIN[modality]
    # A left-right gradient makes the image asymmetric, so a wrong flip shows.
    gradient = np.linspace(0.7, 1.3, SHAPE[0], dtype=np.float32)[:, None, None]
    image = 100.0 * gain * brain * gradient
    image[label == 2] *= 1.6 if modality in ("t2w", "t2f") else 0.8
    image[label == 3] *= 2.0 if modality == "t1c" else 1.1
    image[label == 1] *= 0.4
    return image.astype(np.float32)


def _blob(centre) -> np.ndarray:
    return (5.0 * np.exp(-(_distance(centre) ** 2) / (2 * 2.5**2))).astype(np.float32)


def _stored(spec: CaseSpec, volume: np.ndarray) -> np.ndarray:
    return volume[::-1, ::-1, :] if spec.flipped else volume


def write_fixture_workspace(root: Path, with_model: bool = False) -> Workspace:
    """Write the two cases, predictions and latent maps under `root` and index them.

    `with_model` adds the worker tests' tiny untrained U-Net as `models/unet` (real
    safetensors weights and config), so the viewer can run it through the worker.
    """
    cases = []
    for spec in CASES:
        grid = stored_grid(spec)
        folder = root / "cohorts" / spec.population / spec.case_id
        label = _labels(spec)
        for modality in MODALITY_GAIN:
            write_volume(
                _stored(spec, _modality(spec, modality, label)), grid, folder / f"{spec.case_id}-{modality}.nii.gz"
            )
        write_volume(_stored(spec, label), grid, folder / f"{spec.case_id}-seg.nii.gz", dtype=np.uint8)
        prediction = Path("predictions", "unet", f"{spec.case_id}-seg.nii.gz")
        write_volume(_stored(spec, _labels(spec, shrink=1.0)), grid, root / prediction, dtype=np.uint8)
        overlays = []
        for name, centre in spec.blobs.items():
            file = Path("latents", "unet-dec1", spec.case_id, f"{name}.nii.gz")
            write_volume(_stored(spec, _blob(centre)), grid, root / file)
            overlays.append(
                Overlay(
                    name=name,
                    file=str(file),
                    latent=int(name.split("-")[1]),
                    category="test blob",
                    description=f"Gaussian blob at voxel {centre}",
                    specificity=0.5,
                )
            )
        cases.append(
            WorkspaceCase(
                case_id=spec.case_id,
                population=spec.population,
                folder=os.path.relpath(folder, root),
                prediction=str(prediction),
                dice=spec.dice,
                failure=spec.failure,
                overlays=overlays,
            )
        )
    if with_model:
        from worker_cases import save_tiny_model

        save_tiny_model(root / "models" / "unet")
    models = [
        ModelEntry("unet", "models/unet", (SaeEntry("unet-dec1", "saes/unet-dec1", "saes/unet-dec1/latents.json"),))
    ]
    workspace = Workspace(
        root=root, cases=cases, default_model="models/unet", default_sae="saes/unet-dec1", models=models
    )
    write_workspace_index(workspace)
    return workspace


# -- a brain-sized workspace (2 mm synthetic brain) with a latent that fires over one hemisphere ----------------

BRAIN_LATENT = 5
BRAIN_OVERLAY = f"latent-{BRAIN_LATENT}"
BRAIN_CASE_SEED = 11


@dataclass(frozen=True)
class BrainWorkspace:
    workspace: Workspace
    case_id: str
    activation: np.ndarray  # the latent map, canonical (RAS) voxel order on the case grid
    brain: np.ndarray  # bool, canonical
    affine: np.ndarray  # canonical voxel -> RAS mm
    midline_x: float  # RAS x (mm) of the brain's centre


def brain_latent_map(brain: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, float]:
    """A latent that fires over the brain's left hemisphere (patient left, RAS x below the midline), strongest
    at the hemisphere's centre (2 at its edge, 4 at the centre), and weakly (0.3-0.5, always below the default
    threshold) in a ball of the right hemisphere mirrored from it; zero elsewhere and in a 6 mm midline band."""
    index = np.indices(brain.shape, dtype=np.float32).reshape(3, -1)
    ras = (affine[:3, :3] @ index + affine[:3, 3:4]).reshape(3, *brain.shape)
    inside = ras[:, brain]
    midline = float(np.median(inside[0]))
    left = brain & (ras[0] < midline - 6.0)
    centre = ras[:, left].mean(axis=1)
    distance = np.sqrt(((ras - centre[:, None, None, None]) ** 2).sum(axis=0))
    activation = np.zeros(brain.shape, np.float32)
    activation[left] = 4.0 - 2.0 * distance[left] / distance[left].max()
    mirror = centre.copy()
    mirror[0] = 2 * midline - centre[0]
    ball = np.sqrt(((ras - mirror[:, None, None, None]) ** 2).sum(axis=0))
    weak = brain & (ras[0] > midline + 6.0) & (ball < 25.0)
    activation[weak] = 0.5 - 0.2 * ball[weak] / 25.0
    return activation, midline


def write_brain_workspace(root: Path) -> BrainWorkspace:
    """One synthetic adult case at 2 mm (`medseglens synth`'s generator: a warped MNI brain with a tumour) and
    the map of `BRAIN_LATENT` as a precomputed overlay, stored in the case's own voxel order and geometry."""
    from MedSegLensLib.data import read_case
    from MedSegLensLib.synth.cohort import generate_cohort

    cohort = generate_cohort("adult", 1, BRAIN_CASE_SEED, root / "cohorts" / "adult", spacing=2.0, progress=False)
    case_id = cohort.case_ids[0]
    folder = root / "cohorts" / "adult" / case_id
    case = read_case(folder, population="adult")
    brain = np.any(case.image != 0, axis=0)
    activation, midline = brain_latent_map(brain, case.grid.affine)
    file = Path("latents", "unet-dec1", case_id, f"{BRAIN_OVERLAY}.nii.gz")
    (root / file).parent.mkdir(parents=True, exist_ok=True)
    case.write_like_input(activation, root / file)
    overlay = Overlay(
        name=BRAIN_OVERLAY,
        file=str(file),
        latent=BRAIN_LATENT,
        category="test: hemisphere",
        description="left hemisphere, strongest at its centre (planted test map); weak in a right ball",
    )
    cases = [
        WorkspaceCase(
            case_id=case_id, population="adult", folder=os.path.relpath(folder, root), failure=True, overlays=[overlay]
        )
    ]
    workspace = Workspace(root=root, cases=cases)
    write_workspace_index(workspace)
    return BrainWorkspace(workspace, case_id, activation, brain, np.asarray(case.grid.affine, float), midline)
