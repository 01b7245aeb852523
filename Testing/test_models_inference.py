"""Inference: same segmentation in physical space whatever the voxel order, resampling, `segment` output geometry."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from models_support import (  # noqa: F401 (fixtures)
    one_thread,
    tiny_case_arrays,
    trained_tiny_model,
    write_case,
)
from scipy import ndimage

from MedSegLensLib.cli.main import main
from MedSegLensLib.data import read_case
from MedSegLensLib.data.geometry import Grid, grid_with_spacing, to_canonical
from MedSegLensLib.models import load_model


def _reoriented_copy(images: dict, labels: np.ndarray, affine: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """The same physical volume stored with the first axis flipped and the axes permuted (z, x, y)."""

    def move(array):
        return np.ascontiguousarray(np.transpose(array[::-1], (2, 0, 1)))

    shape = labels.shape
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, shape[0] - 1  # new i = (n-1) - old i
    permute = np.zeros((4, 4))
    permute[0, 1] = permute[1, 2] = permute[2, 0] = permute[3, 3] = 1  # old (i, j, k) from new (k', i', j')
    new_affine = affine @ np.linalg.inv(flip) @ permute
    return {k: move(v) for k, v in images.items()}, move(labels), new_affine


@pytest.mark.parametrize("arch", ["unet", "segformer"])
def test_a_reoriented_copy_gives_the_same_segmentation_in_physical_space(workdir, arch):
    model = load_model(trained_tiny_model(arch, workdir), device="cpu")
    images, labels = tiny_case_arrays(np.random.default_rng(11))
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-20, 13, 7)
    moved_images, moved_labels, moved_affine = _reoriented_copy(images, labels, affine)
    assert not np.array_equal(moved_labels.shape, labels.shape) or not np.allclose(moved_affine, affine)
    original = write_case(workdir / f"ras-{arch}", "c1", images, labels, affine)
    reoriented = write_case(workdir / f"flipped-{arch}", "c1", moved_images, moved_labels, moved_affine)

    outputs = []
    for folder in (original, reoriented):
        case = read_case(folder)
        prediction = model.predict(case)
        assert prediction.labels.dtype == np.uint8 and prediction.grid.same_as(case.grid)
        out = folder / "pred.nii.gz"
        case.write_like_input(prediction.labels, out)
        written = nib.load(str(out))
        source = nib.load(str(folder / "c1-t1n.nii.gz"))
        assert written.shape == source.shape and np.allclose(written.affine, source.affine)
        outputs.append(to_canonical(np.asarray(written.dataobj), Grid(written.shape, written.affine)))
    (first, grid_a), (second, grid_b) = outputs
    assert grid_a.same_as(grid_b)
    assert np.array_equal(first, second)
    assert np.count_nonzero(first) > 0, "the trained model finds the tumour"
    tumour = labels > 0
    dice = 2 * np.count_nonzero((first > 0) & tumour) / (np.count_nonzero(first > 0) + np.count_nonzero(tumour))
    assert dice > 0.6


def test_a_case_at_another_spacing_is_resampled_and_answered_on_its_own_grid(workdir):
    model = load_model(trained_tiny_model("unet", workdir), device="cpu")
    assert model.config.spacing == (2.0, 2.0, 2.0)
    images, labels = tiny_case_arrays(np.random.default_rng(12))
    coarse_grid = Grid(labels.shape, np.diag([2.0, 2.0, 2.0, 1.0]))
    native = read_case(write_case(workdir / "coarse", "c2", images, labels, coarse_grid.affine))
    # the same case at 1 mm: every 2 mm voxel split into 2x2x2 copies (same field of view), so that resampling
    # back to the model's 2 mm grid must give back the native input exactly
    fine_grid = grid_with_spacing(coarse_grid, (1.0, 1.0, 1.0))
    split = np.ones((2, 2, 2), np.float32)
    fine_images = {k: np.kron(v, split).astype(np.float32) for k, v in images.items()}
    fine_labels = np.kron(labels, split.astype(np.uint8))
    case = read_case(write_case(workdir / "fine", "c2", fine_images, fine_labels, fine_grid.affine))
    prepared = model.prepare(case)
    assert prepared.resampled and tuple(prepared.tensor.shape) == (1, 4, 24, 24, 24)
    assert prepared.grid.same_as(coarse_grid)
    assert torch.allclose(prepared.tensor, model.prepare(native).tensor, atol=1e-4)
    logits = model.logits(prepared)
    assert logits.shape == (1, 4, 24, 24, 24)
    prediction = model.to_prediction(logits, prepared, probabilities=True)
    assert prediction.labels.shape == (48, 48, 48) and prediction.grid.same_as(case.grid)
    assert prediction.probabilities.shape == (4, 48, 48, 48)
    # independently: native probabilities interpolated at the 1 mm voxel centres (coarse index (f - 0.5) / 2)
    native_probabilities = model.predict(native, probabilities=True).probabilities
    centres = np.meshgrid(*[(np.arange(48) - 0.5) / 2] * 3, indexing="ij")
    expected = np.stack([ndimage.map_coordinates(p, centres, order=1) for p in native_probabilities])
    interior = (slice(None), *[slice(1, 47)] * 3)  # where the fine centres lie inside the coarse grid
    assert np.allclose(prediction.probabilities[interior], expected[interior], atol=1e-4)
    assert np.count_nonzero(prediction.labels) > 0


def test_bf16_autocast_agrees_with_fp32(workdir):
    model = load_model(trained_tiny_model("unet", workdir), device="cpu")
    images, labels = tiny_case_arrays(np.random.default_rng(13))
    case = read_case(write_case(workdir / "bf16", "c3", images, labels, np.diag([2.0, 2.0, 2.0, 1.0])))
    full = model.predict(case).labels
    half = model.predict(case, precision="bf16").labels
    assert np.mean(full == half) > 0.97


def test_segment_command_writes_the_input_geometry(workdir, capsys):
    model_dir = trained_tiny_model("segformer", workdir)
    images, labels = tiny_case_arrays(np.random.default_rng(14))
    affine = np.array([[0, 0, -2.0, 30], [2.0, 0, 0, -12], [0, -2.0, 0, 40], [0, 0, 0, 1]])  # axes permuted and flipped
    folder = write_case(workdir / "cli", "c4", images, labels, affine)
    out = workdir / "cli" / "seg.nii.gz"
    command = ["segment", "--model", str(model_dir), "--case", str(folder), "--out", str(out), "--device", "cpu"]
    assert main(command) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    written = nib.load(str(out))
    assert written.shape == labels.shape and np.allclose(written.affine, affine)
    assert written.get_data_dtype() == np.uint8
    values = np.asarray(written.dataobj)
    assert set(np.unique(values)) <= {0, 1, 2, 3} and np.count_nonzero(values) > 0
    assert main(command) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main([*command, "--overwrite"]) == 0
    # the four files named one by one (the shared case options) give the same segmentation
    by_name = workdir / "cli" / "seg-by-name.nii.gz"
    named = [arg for m in ("t1n", "t1c", "t2w", "t2f") for arg in (f"--{m}", str(folder / f"c4-{m}.nii.gz"))]
    assert main(["segment", "--model", str(model_dir), *named, "--out", str(by_name), "--device", "cpu"]) == 0
    assert np.array_equal(np.asarray(nib.load(str(by_name)).dataobj), values)
