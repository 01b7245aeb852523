"""Geometry: canonical RAS order, round trips back to the input's geometry, resampling, NRRD LPS."""

from __future__ import annotations

import numpy as np
import pytest
from datafiles import affine, smooth_image, tumour_labels, write_case, write_nifti, write_nrrd

from MedSegLensLib.data import MODALITIES, Grid, read_case, read_volume, write_volume
from MedSegLensLib.data.geometry import (
    from_canonical,
    grid_with_spacing,
    linear_reach,
    linear_support,
    resample_to_grid,
    sub_grid,
    to_canonical,
)
from MedSegLensLib.errors import OutputError
from MedSegLensLib.metrics import brats_scores


def _permute_and_flip(array: np.ndarray, aff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same physical volume stored with axes (k, i, j) and the new first and last axes reversed.

    The new affine is built by hand: new voxel (a, b, c) holds old voxel
    (i, j, k) = (b, n2 - 1 - c, n0 - 1 - a), where n0, n2 are the new axis lengths.
    """
    moved = np.transpose(array, (2, 0, 1))[::-1, :, ::-1]
    n0, _, n2 = moved.shape
    new_to_old = np.array(
        [
            [0, 1, 0, 0],
            [0, 0, -1, n2 - 1],
            [-1, 0, 0, n0 - 1],
            [0, 0, 0, 1],
        ],
        dtype=float,
    )
    return np.ascontiguousarray(moved), aff @ new_to_old


def _world(aff: np.ndarray, ijk) -> np.ndarray:
    return aff[:3, :3] @ np.asarray(ijk, dtype=float) + aff[:3, 3]


def test_hand_built_permutation_covers_the_same_space(rng):
    array = smooth_image((6, 7, 8), rng)
    aff = affine((1.0, 1.5, 2.0), (3, 4, 5))
    moved, moved_aff = _permute_and_flip(array, aff)
    for old in [(0, 0, 0), (5, 6, 7), (2, 3, 4)]:
        matches = np.argwhere(moved == array[old])
        assert len(matches) == 1
        np.testing.assert_allclose(_world(moved_aff, matches[0]), _world(aff, old))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_flipped_permuted_case_gives_the_same_canonical_arrays(tmp_path, rng, suffix):
    aff = affine((1.0, 1.25, 1.5), (-10, 20, 5))
    plain = write_case(tmp_path / "plain", "c", rng, aff=aff, suffix=suffix)
    flipped_dir = tmp_path / "flipped" / "c"
    for role, array in plain["arrays"].items():
        moved, moved_aff = _permute_and_flip(array, aff)
        (write_nrrd if suffix == ".nrrd" else write_nifti)(flipped_dir / f"c-{role}{suffix}", moved, moved_aff)
    a, b = read_case(plain["folder"]), read_case(flipped_dir)
    assert b.source_grid.orientation != a.source_grid.orientation
    assert a.grid.same_as(b.grid, atol=1e-4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)


def test_write_like_input_restores_shape_affine_and_voxels(tmp_path, rng):
    aff = affine((1.0, 1.25, 1.5), (-10, 20, 5))
    plain = write_case(tmp_path / "plain", "c", rng, aff=aff)
    flipped_dir = tmp_path / "flipped" / "c"
    originals = {}
    for role, array in plain["arrays"].items():
        originals[role] = _permute_and_flip(array, aff)
        write_nifti(flipped_dir / f"c-{role}.nii.gz", *originals[role])
    case = read_case(flipped_dir)
    for suffix in (".nii.gz", ".nrrd"):
        out = case.write_like_input(case.label, tmp_path / f"out{suffix}", dtype=np.uint8)
        back = read_volume(out, kind="label")
        assert back.array.shape == originals["seg"][0].shape
        np.testing.assert_allclose(back.grid.affine, originals["seg"][1], atol=1e-5)
        np.testing.assert_array_equal(back.array, originals["seg"][0])


def test_oblique_grid_round_trip(rng):
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rotation @ np.diag([1.0, 2.0, 1.5])
    aff = np.diag([-1, 1, -1, 1]) @ aff  # also point axes away from RAS
    array = smooth_image((5, 6, 7), rng)
    canonical, grid = to_canonical(array, Grid(array.shape, aff))
    assert grid.orientation == "RAS"
    # each canonical voxel keeps its world position
    for ijk in [(0, 0, 0), (4, 5, 6), (1, 2, 3)]:
        value = canonical[ijk]
        source = tuple(np.argwhere(array == value)[0])
        np.testing.assert_allclose(_world(grid.affine, ijk), _world(aff, source), atol=1e-9)
    np.testing.assert_array_equal(from_canonical(canonical, Grid(array.shape, aff)), array)
    stacked = np.stack([canonical, canonical * 2])
    np.testing.assert_array_equal(from_canonical(stacked, Grid(array.shape, aff))[1], array * 2)


def test_flipped_prediction_gives_the_same_physical_scores(rng):
    aff = affine((1.0, 1.5, 2.0))
    ref = tumour_labels((20, 18, 16), radii=(6, 5, 4))
    pred = tumour_labels((20, 18, 16), centre=(11, 9, 8), radii=(6, 4, 4))
    plain = brats_scores(pred, ref, spacing=(1.0, 1.5, 2.0))
    (fp, faff), (fr, _) = _permute_and_flip(pred, aff), _permute_and_flip(ref, aff)
    flipped_spacing = np.linalg.norm(faff[:3, :3], axis=0)
    assert brats_scores(fp, fr, spacing=flipped_spacing) == pytest.approx(plain)
    assert plain["hd95_WT"] > 0 and plain["dice_WT"] < 1


def test_modality_on_a_coarser_grid_lands_in_the_right_place(tmp_path, rng):
    """T1c on a 2 mm grid, flipped in x: trilinear resampling of a linear field is exact inside."""
    shape = (20, 22, 18)
    fine = affine((1.0, 1.0, 1.0), (-9.5, -10.5, -8.5))
    field = lambda xyz: 200 + 2.0 * xyz[0] + 3.0 * xyz[1] - 1.0 * xyz[2]  # noqa: E731
    written = write_case(tmp_path, "c", rng, shape=shape, aff=fine)
    coarse_shape = (10, 11, 9)
    coarse = affine((2.0, 2.0, 2.0), (-9.0, -10.0, -8.0))
    coarse = coarse @ np.array([[-1, 0, 0, coarse_shape[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    ijk = np.indices(coarse_shape).reshape(3, -1)
    values = field(coarse[:3, :3] @ ijk + coarse[:3, 3:4]).reshape(coarse_shape).astype(np.float32)
    write_nifti(written["paths"]["t1c"], values, coarse)
    case = read_case(written["folder"])
    assert case.image.shape == (4, *shape)
    fine_ijk = np.indices(shape).reshape(3, -1)
    expected = field(case.grid.affine[:3, :3] @ fine_ijk + case.grid.affine[:3, 3:4]).reshape(shape)
    # voxels whose centre lies inside the coarse grid's outermost centres
    inside = (slice(1, -1),) * 3
    np.testing.assert_allclose(case.image[1][inside], expected[inside], rtol=1e-5, atol=1e-3)
    # the untouched modalities are exactly what was written
    np.testing.assert_array_equal(case.image[0], written["arrays"]["t1n"])


def test_grid_with_spacing_keeps_the_field_of_view():
    grid = Grid((20, 30, 40), affine((1.0, 1.0, 1.0), (5, 6, 7)))
    coarse = grid_with_spacing(grid, (2.0, 3.0, 4.0))
    assert coarse.shape == (10, 10, 10)
    corner = lambda g: _world(g.affine, (-0.5, -0.5, -0.5))  # noqa: E731
    np.testing.assert_allclose(corner(coarse), corner(grid))


@pytest.mark.parametrize("oblique", [False, True])
def test_a_change_in_a_box_reaches_only_the_linear_reach_and_its_support_resamples_it_exactly(rng, oblique):
    """What a steering update relies on (`SegmentationModel.labels_within`): resampling a change made inside a box
    of the model grid alters case voxels only inside `linear_reach`, and resampling just `linear_support` gives
    those voxels bit for bit."""
    for _ in range(8):
        rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0] if oblique else np.eye(3)
        fine = np.eye(4)
        fine[:3, :3] = rotation * rng.uniform(0.7, 1.3, 3)
        fine[:3, 3] = rng.uniform(-40, 40, 3)
        case = Grid(tuple(int(n) for n in rng.integers(20, 36, 3)), fine)
        model = grid_with_spacing(case, tuple(rng.uniform(1.6, 2.4, 3)))
        volume = rng.random(model.shape).astype(np.float32)
        start = rng.integers(0, np.array(model.shape) - 3)
        box = tuple(slice(int(a), int(a + n)) for a, n in zip(start, rng.integers(1, 4, 3)))
        changed = volume.copy()
        changed[box] += 1.0
        before, after = resample_to_grid(volume, model, case), resample_to_grid(changed, model, case)
        target = linear_reach(model, case, box)
        outside = after != before
        outside[target] = False
        assert (after != before).any() and not outside.any()
        source = linear_support(model, case, target)
        part = resample_to_grid(changed[source], sub_grid(model, source), sub_grid(case, target))
        assert np.array_equal(part, after[target])


def test_writer_converts_types_and_refuses_nhdr(tmp_path):
    grid = Grid((4, 4, 4), affine())
    out = write_volume(np.ones((4, 4, 4), np.int64), grid, tmp_path / "a.nii.gz")
    assert read_volume(out).array.dtype == np.int32
    out = write_volume(np.ones((4, 4, 4), bool), grid, tmp_path / "b.nrrd")
    assert read_volume(out).array.dtype == np.uint8
    with pytest.raises(OutputError, match="unsupported output type"):
        write_volume(np.ones((4, 4, 4)), grid, tmp_path / "c.nhdr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "b.nrrd"]


def _slicer_read(path):
    """IJK-to-RAS and voxels as 3D Slicer's own (ITK-based) reader sees them."""
    slicer = pytest.importorskip("slicer")
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLScalarVolumeNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    image = node.GetImageData()
    dims = image.GetDimensions()
    voxels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1]).transpose(2, 1, 0)
    return ijk_to_ras, voxels


@pytest.mark.scene
@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_written_geometry_matches_slicer_reader(tmp_path, rng, suffix):
    aff = np.array([[0, 0, -1.5, 40], [1.2, 0, 0, -30], [0, -2.0, 0, 12], [0, 0, 0, 1]], dtype=float)
    array = smooth_image((6, 7, 8), rng)
    path = write_volume(array, Grid(array.shape, aff), tmp_path / f"v{suffix}")
    ijk_to_ras, voxels = _slicer_read(path)
    np.testing.assert_allclose(ijk_to_ras, aff, atol=1e-5)
    np.testing.assert_allclose(voxels, array, rtol=1e-6)
    np.testing.assert_allclose(read_volume(path).grid.affine, aff, atol=1e-5)


@pytest.mark.scene
@pytest.mark.parametrize("space", ["left-posterior-superior", "right-anterior-superior"])
def test_nrrd_reader_matches_slicer_in_lps_and_ras(tmp_path, rng, space):
    aff = np.array([[-1.1, 0, 0, 10], [0, 0, 1.3, -20], [0, 0.9, 0, 7], [0, 0, 0, 1]], dtype=float)
    array = smooth_image((5, 6, 7), rng)
    path = write_nrrd(tmp_path / "hand.nrrd", array, aff, space=space)
    assert space.encode() in path.read_bytes()[:400]
    ijk_to_ras, voxels = _slicer_read(path)
    ours = read_volume(path)
    np.testing.assert_allclose(ours.grid.affine, ijk_to_ras, atol=1e-6)
    np.testing.assert_allclose(ours.array, voxels)
    np.testing.assert_allclose(ours.grid.affine, aff, atol=1e-9)


def test_modalities_must_be_complete(tmp_path, rng):
    from MedSegLensLib.data import load_case
    from MedSegLensLib.errors import InputError

    written = write_case(tmp_path, "c", rng)
    with pytest.raises(InputError, match="missing modality t1c"):
        load_case({m: written["paths"][m] for m in MODALITIES if m != "t1c"})
