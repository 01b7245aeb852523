"""BraTS metrics on hand-made cases with known answers, an independent brute-force HD95, files and CLI."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
from conftest import subprocess_env
from datafiles import affine, tumour_labels, write_case, write_nifti, write_nrrd
from scipy.ndimage import gaussian_filter
from scipy.spatial.distance import cdist

from MedSegLensLib.errors import InputError
from MedSegLensLib.metrics import HD95_PENALTY_MM, brats_scores, dice, hd95, resolve_pairs, score_pair, score_pairs

SHAPE = (24, 20, 16)


def _box(shape=SHAPE, lo=(4, 4, 4), hi=(12, 12, 10)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return mask


def test_dice_of_shifted_cubes():
    a = _box(lo=(2, 2, 2), hi=(12, 12, 12), shape=(30, 30, 30))
    b = _box(lo=(4, 2, 2), hi=(14, 12, 12), shape=(30, 30, 30))
    assert dice(a, b) == pytest.approx(2 * 800 / 2000)
    assert dice(a, a) == 1.0


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("gap", [1, 3])
def test_hd95_of_parallel_plates_is_the_gap_in_mm(axis, gap):
    """Two one-voxel plates: every surface voxel is exactly `gap` voxels from the other plate."""
    spacing = (2.5, 0.7, 1.3)
    a, b = np.zeros(SHAPE, bool), np.zeros(SHAPE, bool)
    index = [slice(2, -2)] * 3
    index[axis] = 3
    a[tuple(index)] = True
    index[axis] = 3 + gap
    b[tuple(index)] = True
    assert hd95(a, b, spacing) == pytest.approx(gap * spacing[axis])
    assert dice(a, b) == 0.0


def test_hd95_of_single_voxels_is_their_distance():
    a, b = np.zeros(SHAPE, bool), np.zeros(SHAPE, bool)
    a[1, 2, 3] = True
    b[4, 6, 3] = True
    spacing = (1.0, 2.0, 3.0)
    assert hd95(a, b, spacing) == pytest.approx(np.hypot(3 * 1.0, 4 * 2.0))


def test_empty_masks_follow_brats_conventions():
    empty, full = np.zeros(SHAPE, bool), _box()
    assert (dice(empty, empty), hd95(empty, empty)) == (1.0, 0.0)
    assert (dice(full, empty), hd95(full, empty)) == (0.0, HD95_PENALTY_MM)
    assert (dice(empty, full), hd95(empty, full)) == (0.0, HD95_PENALTY_MM)
    assert HD95_PENALTY_MM == 373.0


def _brute_hd95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """Independent HD95: surfaces by explicit 6-neighbour test, distances by all pairs."""

    def surface(mask):
        padded = np.pad(mask, 1)
        core = padded[1:-1, 1:-1, 1:-1].copy()
        for axis in range(3):
            for step in (1, -1):
                core &= np.roll(padded, step, axis)[1:-1, 1:-1, 1:-1]
        return mask & ~core

    pa = np.argwhere(surface(a)) * np.asarray(spacing)
    pb = np.argwhere(surface(b)) * np.asarray(spacing)
    distances = cdist(pa, pb)
    return float(np.percentile(np.concatenate([distances.min(axis=1), distances.min(axis=0)]), 95))


def _blob(rng, shape, level):
    return gaussian_filter(rng.normal(size=shape), 1.5) > level


@pytest.mark.parametrize("seed", range(6))
def test_hd95_matches_brute_force_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    shape = (14, 12, 10)
    spacing = tuple(rng.uniform(0.5, 3.0, 3))
    a, b = _blob(rng, shape, 0.15), _blob(rng, shape, 0.25)  # blobs touch the image edges too
    assert a.any() and b.any()
    assert hd95(a, b, spacing) == pytest.approx(_brute_hd95(a, b, spacing), rel=1e-9)
    assert hd95(b, a, spacing) == pytest.approx(hd95(a, b, spacing), rel=1e-12)


def test_regions_and_labels_from_label_maps():
    ref = tumour_labels(SHAPE, radii=(8, 7, 6))
    pred = np.where(ref == 3, 2, ref).astype(np.uint8)  # enhancing tumour mistaken for edema
    scores = brats_scores(pred, ref, spacing=(1, 1, 1))
    assert scores["dice_WT"] == 1.0 and scores["hd95_WT"] == 0.0
    assert scores["dice_ET"] == 0.0 and scores["hd95_ET"] == HD95_PENALTY_MM
    n_ncr, n_et = np.sum(ref == 1), np.sum(ref == 3)
    assert scores["dice_TC"] == pytest.approx(2 * n_ncr / (2 * n_ncr + n_et))
    assert scores["dice_NCR"] == 1.0
    n_ed = np.sum(ref == 2)
    assert scores["dice_ED"] == pytest.approx(2 * n_ed / (2 * n_ed + n_et))
    healthy = brats_scores(np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8))
    assert all(v == (1.0 if k.startswith("dice") else 0.0) for k, v in healthy.items())


def test_pair_files_reoriented_copy_and_2021_reference(tmp_path):
    ref = tumour_labels(SHAPE, radii=(8, 7, 6))
    aff = affine((1.0, 1.2, 2.0))
    ref_path = write_nifti(tmp_path / "c_seg.nii.gz", np.where(ref == 3, 4, ref).astype(np.uint8), aff)
    # the prediction is the same labels stored flipped in x (a reoriented copy), as NRRD
    flip = np.array([[-1, 0, 0, SHAPE[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    pred_path = write_nrrd(tmp_path / "pred.nrrd", ref[::-1].copy(), aff @ flip)
    scores = score_pair(pred_path, ref_path)
    assert all(scores[f"dice_{s}"] == 1.0 for s in ("WT", "TC", "ET", "NCR", "ED"))
    shifted = np.roll(ref, 2, axis=2)
    shifted_path = write_nifti(tmp_path / "shifted.nii.gz", shifted, aff)
    assert score_pair(shifted_path, ref_path)["hd95_WT"] == pytest.approx(2 * 2.0)


def test_pair_on_another_grid_or_with_bad_labels_is_refused(tmp_path):
    ref = tumour_labels(SHAPE)
    ref_path = write_nifti(tmp_path / "ref.nii.gz", ref, affine())
    other = write_nifti(tmp_path / "other.nii.gz", ref, affine((2.0, 1.0, 1.0)))
    with pytest.raises(InputError) as info:
        score_pair(other, ref_path)
    assert str(other) in str(info.value) and "reference's grid" in str(info.value)
    bad = ref.copy()
    bad[0, 0, 0] = 7
    bad_path = write_nifti(tmp_path / "bad.nii.gz", bad, affine())
    with pytest.raises(InputError, match=r"bad.nii.gz: label values \[7\]"):
        score_pair(bad_path, ref_path)


def _cohort_with_predictions(tmp_path, rng):
    refs = tmp_path / "refs"
    preds = tmp_path / "preds"
    truth = {}
    for index, cid in enumerate(["P-001", "P-002", "P-003"]):
        labels = tumour_labels((16, 18, 14), centre=(8, 9, 7), radii=(5, 4, 3))
        truth[cid] = write_case(refs, cid, rng, labels=labels)["labels"]
        if cid != "P-003":
            write_nifti(preds / f"{cid}.nii.gz", np.roll(labels, index, axis=0), affine())
    write_nifti(preds / "stray.nii.gz", truth["P-001"], affine())
    return refs, preds, truth


def test_folder_matching_scores_and_penalises_missing_predictions(tmp_path, rng):
    refs, preds, truth = _cohort_with_predictions(tmp_path, rng)
    pairs, unmatched = resolve_pairs(preds, refs)
    assert [p.case_id for p in pairs] == ["P-001", "P-002", "P-003"] and unmatched == ["stray"]
    rows = score_pairs(pairs)
    assert rows[0]["dice_WT"] == 1.0 and rows[0]["status"] == "ok"
    expected = brats_scores(np.roll(truth["P-002"], 1, axis=0), truth["P-002"])
    assert rows[1]["dice_WT"] == pytest.approx(expected["dice_WT"]) and rows[1]["dice_WT"] < 1
    assert rows[2]["status"] == "missing prediction"
    assert rows[2]["dice_WT"] == 0.0 and rows[2]["hd95_WT"] == HD95_PENALTY_MM


def test_folders_with_no_common_case_or_mixed_arguments(tmp_path, rng):
    refs, preds, _ = _cohort_with_predictions(tmp_path, rng)
    empty = tmp_path / "unrelated"
    write_nifti(empty / "zzz.nii.gz", np.zeros((4, 4, 4), np.uint8), affine())
    with pytest.raises(InputError, match="matches a reference case id"):
        resolve_pairs(empty, refs)
    with pytest.raises(InputError, match="two label files or two folders"):
        resolve_pairs(preds / "P-001.nii.gz", refs)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "MedSegLensLib", "metrics", *map(str, args)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=180,
    )


def test_cli_writes_per_case_rows_and_summary(tmp_path, rng):
    refs, preds, _ = _cohort_with_predictions(tmp_path, rng)
    out = tmp_path / "results" / "metrics.csv"
    result = _cli("--pred", preds, "--ref", refs, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "1 reference case(s) have no prediction" in result.stderr and "stray" in result.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["case_id"] for r in rows] == ["P-001", "P-002", "P-003", "mean", "std", "median"]
    cases = rows[:3]
    for column in ("dice_WT", "hd95_ET", "dice_NCR", "hd95_ED"):
        values = [float(r[column]) for r in cases]
        assert float(rows[3][column]) == pytest.approx(np.mean(values), abs=1e-5)
        assert float(rows[5][column]) == pytest.approx(np.median(values), abs=1e-5)
    assert f"WT: Dice {np.mean([float(r['dice_WT']) for r in cases]):.4f}" in result.stdout
    before = out.read_bytes()
    again = _cli("--pred", preds, "--ref", refs, "--out", out)
    assert again.returncode == 2 and "already exists" in again.stderr and out.read_bytes() == before
    assert not [p for p in out.parent.iterdir() if p.name != "metrics.csv"]  # no partial files


def test_cli_single_pair_and_dice_only(tmp_path):
    ref = tumour_labels(SHAPE)
    ref_path = write_nifti(tmp_path / "case_seg.nii.gz", ref, affine())
    pred_path = write_nifti(tmp_path / "pred.nii.gz", np.roll(ref, 1, axis=1), affine())
    out = tmp_path / "m.csv"
    result = _cli("--pred", pred_path, "--ref", ref_path, "--out", out, "--no-hd95")
    assert result.returncode == 0, result.stderr
    (row, *_summary) = list(csv.DictReader(out.open()))
    assert row["case_id"] == "case" and "hd95_WT" not in row
    assert float(row["dice_WT"]) == pytest.approx(
        brats_scores(np.roll(ref, 1, axis=1), ref, with_hd95=False)["dice_WT"], abs=1e-6
    )


def test_cli_grid_mismatch_is_one_line(tmp_path):
    ref_path = write_nifti(tmp_path / "r.nii.gz", tumour_labels(SHAPE), affine())
    pred_path = write_nifti(tmp_path / "p.nii.gz", tumour_labels((12, 10, 8)), affine())
    result = _cli("--pred", pred_path, "--ref", ref_path, "--out", tmp_path / "m.csv")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert str(pred_path) in result.stderr and not (tmp_path / "m.csv").exists()
