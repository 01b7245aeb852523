"""Cases and hooks shared by the bring-your-own-model tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from datafiles import smooth_image, tumour_labels, write_nifti

from MedSegLensLib.data import MODALITIES, load_case

SHAPE = (26, 23, 21)


def lps_affine(spacing: float = 1.0, origin=(30.0, 20.0, -5.0)) -> np.ndarray:
    """A BraTS-like affine: voxels stored left-posterior-superior."""
    affine = np.diag([-spacing, -spacing, spacing, 1.0])
    affine[:3, 3] = origin
    return affine


def case_arrays(seed: int = 5, shape=SHAPE) -> dict[str, np.ndarray]:
    """Four modalities with a bright tumour and a zero margin (so nnU-Net's crop-to-non-zero crops)."""
    rng = np.random.default_rng(seed)
    tumour = tumour_labels(shape, radii=(6, 5, 4)) > 0
    arrays = {}
    for index, modality in enumerate(MODALITIES):
        image = smooth_image(shape, rng, offset=100.0 + 40 * index)
        image[tumour] += 60.0 * (index + 1)
        image[:3] = 0.0
        arrays[modality] = image
    return arrays


def write_case_folder(folder: Path, arrays: dict[str, np.ndarray], affine: np.ndarray) -> dict[str, Path]:
    """A BraTS 2023-named case folder; returns the modality files."""
    return {m: write_nifti(folder / f"{folder.name}-{m}.nii.gz", a, affine) for m, a in arrays.items()}


def flipped_copy(folder: Path, arrays: dict[str, np.ndarray], affine: np.ndarray) -> dict[str, Path]:
    """The same physical images stored with the first two voxel axes reversed (RAS instead of LPS)."""
    flip = np.eye(4)
    for axis in (0, 1):
        flip[axis, axis] = -1.0
        flip[axis, 3] = arrays["t1n"].shape[axis] - 1
    return write_case_folder(folder, {m: np.ascontiguousarray(a[::-1, ::-1]) for m, a in arrays.items()}, affine @ flip)


def read_files(files: dict[str, Path]):
    return load_case(files)


def capture(model, layer: str, case) -> list[torch.Tensor]:
    """Forward-hook one named layer of `model.network` during `model.predict(case)`; every window's output."""
    seen: list[torch.Tensor] = []
    handle = dict(model.network.named_modules())[layer].register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        model.predict(case)
    finally:
        handle.remove()
    return seen


def train_sae_on_layer(model, layer: str, cases, out_dir: Path):
    """Activations of one layer (every window's voxels as rows), a tiny SAE trained on them and saved
    for this model; returns (the reloaded SAE, its fidelity on those rows, the rows)."""
    from MedSegLensLib.sae import (
        SAEInfo,
        SAETrainingSettings,
        TensorRows,
        check_compatible,
        evaluate_fidelity,
        load_sae,
        save_sae,
        train_sae,
    )

    maps = [t for case in cases for t in capture(model, layer, case)]
    rows = torch.cat([m.movedim(1, -1).reshape(-1, m.shape[1]) for m in maps]).float()
    channels = rows.shape[1]
    config = SAETrainingSettings(
        n_latents=4 * channels, k=2, total_rows=60 * 256, batch_size=256, init_rows=2048, dead_after_rows=4096, seed=0
    )
    sae, summary = train_sae(TensorRows(rows), config, show_progress=False)
    save_sae(sae, out_dir, SAEInfo(model.fingerprint, layer, training=summary))
    loaded = load_sae(out_dir)
    check_compatible(loaded, model.fingerprint, layer, channels)
    return loaded, evaluate_fidelity(loaded, TensorRows(rows).scan(1024)), rows


def imported_source(tmp_path_factory, name: str, build, fmt: str):
    """Module fixture body: build a source model with its library (one thread), import it; yield the paths."""
    import os

    from MedSegLensLib.models.external import import_model

    previous, environment = torch.get_num_threads(), dict(os.environ)
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp(name)
    source = build(root / "source")
    model_dir = root / "imported"
    fingerprint = import_model(source, fmt, model_dir)
    yield {"root": root, "source": source, "model_dir": model_dir, "fingerprint": fingerprint}
    torch.set_num_threads(previous)
    os.environ.clear()
    os.environ.update(environment)  # nnU-Net's builder sets its folders in the environment
