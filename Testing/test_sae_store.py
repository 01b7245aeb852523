"""Activation store: shards round-trip, crash-safe resume, streamed shuffles, stratified sampling."""

from __future__ import annotations

import json
import subprocess
import textwrap

import numpy as np
import pytest
import torch
from conftest import subprocess_env

from MedSegLensLib.errors import CompatibilityError, InputError, IntegrityError, OutputError
from MedSegLensLib.sae import ActivationStore, StoreWriter, TensorRows, sample_by_stratum, voxel_strata
from MedSegLensLib.sae.feature_rows import sample_feature_map
from MedSegLensLib.sae.rows import seeded_generator
from MedSegLensLib.sae.strata import STRATA, STRATUM_CODE


def fake_case(index: int, rows: int, d_in: int = 6):
    gen = np.random.default_rng(index)
    return dict(
        case_id=f"case{index:03d}",
        population="adult" if index % 2 else "ssa",
        activations=gen.normal(size=(rows, d_in)).astype(np.float32),
        coords=gen.integers(0, 60, size=(rows, 3)),
        label=gen.integers(0, 4, size=rows),
        tissue=gen.integers(0, 4, size=rows),
        stratum=gen.integers(0, len(STRATA), size=rows),
    )


def write_store(path, n_cases=5, rows=70, **kwargs):
    writer = StoreWriter(path, 6, shard_rows=100, **kwargs)
    cases = [fake_case(i, rows + 3 * i) for i in range(n_cases)]
    for case in cases:
        writer.add_case(**case)
    return writer.close(), cases


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_shards_round_trip_values_and_metadata(tmp_path, dtype):
    store, cases = write_store(tmp_path / "store", dtype=dtype)
    assert len(store.shards) > 2 and store.n_rows == sum(c["activations"].shape[0] for c in cases)
    rows, meta = zip(*store.scan_with_metadata(batch_size=37))
    rows = torch.cat(rows)
    meta = {k: torch.cat([m[k] for m in meta]) for k in meta[0]}
    expected = np.concatenate([c["activations"] for c in cases])
    tol = 1e-3 if dtype == "float16" else 0
    np.testing.assert_allclose(rows.numpy(), expected, rtol=tol, atol=tol)
    for column in ("coords", "label", "tissue", "stratum"):
        np.testing.assert_array_equal(meta[column].numpy(), np.concatenate([c[column] for c in cases]))
    case_ids = [store.cases[i]["case_id"] for i in meta["case_index"].tolist()]
    assert case_ids == [c["case_id"] for c in cases for _ in range(c["activations"].shape[0])]
    assert [c["population"] for c in store.cases] == [c["population"] for c in cases]
    store.verify()


def test_streamed_batches_cover_each_row_once_per_epoch_and_resume_exactly(tmp_path):
    store, _ = write_store(tmp_path / "store", n_cases=6, rows=50, dtype="float32")
    store.window_rows = 90  # windows cut across shards: the store is never read whole
    ids = torch.cat([b[:, :1] for b in store.scan(1000)]).flatten()
    batch, per_epoch = 32, store.n_rows
    stream = store.batches(batch, seed=3)
    seen = torch.cat([next(stream)[:, 0] for _ in range(per_epoch // batch)])
    assert len(set(seen.tolist())) == seen.numel()  # no row twice within an epoch
    assert set(seen.tolist()) <= set(ids.tolist())
    assert not torch.equal(seen, ids[: seen.numel()])  # shuffled, not storage order
    again = store.batches(batch, seed=3)
    first = [next(again) for _ in range(12)]
    resumed = store.batches(batch, seed=3, start_batch=7)
    for expected in first[7:]:
        assert torch.equal(next(resumed), expected)
    other = next(store.batches(batch, seed=4))
    assert not torch.equal(other, first[0])


@pytest.mark.parametrize("batch", [7, 45])  # batches that span an epoch's end, and two whole epochs
def test_in_memory_rows_stream_one_shuffled_window_per_epoch_and_resume_exactly(batch):
    rows = torch.arange(20, dtype=torch.float16)[:, None].repeat(1, 3)
    epochs = [rows[torch.randperm(20, generator=seeded_generator(5, epoch))] for epoch in range(12)]
    expected = torch.cat(epochs).float().split(batch)[:-1]
    stream = TensorRows(rows).batches(batch, seed=5)
    got = [next(stream) for _ in range(len(expected))]
    assert all(g.dtype == torch.float32 and torch.equal(g, e) for g, e in zip(got, expected, strict=True))
    resumed = TensorRows(rows).batches(batch, seed=5, start_batch=3)
    assert torch.equal(next(resumed), expected[3])


def test_sample_draws_distinct_rows_from_all_shards(tmp_path):
    store, cases = write_store(tmp_path / "store", n_cases=6)
    sample = store.sample(150, seed=0)
    assert sample.shape == (150, 6)
    everything = torch.cat(list(store.scan(1000)))
    matches = (sample[:, None, :] == everything[None]).all(-1).float().argmax(1)
    assert matches.unique().numel() == 150
    assert matches.max() > store.n_rows * 0.8 and matches.min() < store.n_rows * 0.2


KILLER = textwrap.dedent("""
    import sys, os, numpy as np
    import MedSegLensLib.sae.store as store_module
    sys.path.insert(0, sys.argv[2])
    from test_sae_store import fake_case
    commits = 0
    real_write = store_module.write_json_atomic
    def dying_write(path, obj):
        global commits
        commits += 1
        if commits == 4:  # shards of the third flush are on disk, its manifest is not
            os._exit(9)
        real_write(path, obj)
    store_module.write_json_atomic = dying_write
    writer = store_module.StoreWriter(sys.argv[1], 6, shard_rows=100)
    for i in range(8):
        writer.add_case(**fake_case(i, 70 + 3 * i))
    writer.close()
""")


def test_store_killed_mid_write_resumes_from_last_complete_shard(tmp_path, python_exe):
    path = tmp_path / "store"
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    result = subprocess.run(
        [python_exe, "-c", KILLER, str(path), tests_dir],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 9, result.stderr
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["state"] == "writing"
    listed = {s["file"] for s in manifest["shards"]}
    orphans = {p.name for p in path.glob("shard-*")} - listed
    assert orphans  # the killed flush left shard files the manifest never adopted
    with pytest.raises(InputError, match="incomplete"):
        ActivationStore(path)
    with pytest.raises(OutputError, match="--resume"):
        StoreWriter(path, 6, shard_rows=100)
    with pytest.raises(CompatibilityError, match="d_in"):
        StoreWriter(path, 7, shard_rows=100, resume=True)

    writer = StoreWriter(path, 6, shard_rows=100, resume=True)
    done = writer.done_case_ids
    assert done and len(done) < 8
    assert not any((path / name).exists() for name in orphans)
    for i in range(8):
        case = fake_case(i, 70 + 3 * i)
        if case["case_id"] not in done:
            writer.add_case(**case)
    store = writer.close()
    reference, _ = write_store(tmp_path / "reference", n_cases=8)
    assert [c["case_id"] for c in store.cases] == [c["case_id"] for c in reference.cases]
    assert torch.equal(torch.cat(list(store.scan(500))), torch.cat(list(reference.scan(500))))


def test_damaged_shard_and_bad_rows_are_refused(tmp_path):
    store, _ = write_store(tmp_path / "store")
    shard = store.path / store.shards[1]["file"]
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="checksum"):
        ActivationStore(store.path).verify()
    shard.write_bytes(bytes(data[:-10]))
    with pytest.raises(IntegrityError, match="truncated"):
        ActivationStore(store.path)
    writer = StoreWriter(tmp_path / "other", 6)
    with pytest.raises(Exception, match=r"expects \(rows, 6\)"):
        writer.add_case("c", "adult", np.zeros((4, 5)), np.zeros((4, 3)))


def test_strata_follow_labels_then_tissue():
    label = np.array([[0, 1, 2, 3, 0, 0]])
    tissue = np.array([[3, 3, 3, 3, 1, 0]])
    brain = np.array([[1, 1, 1, 1, 1, 1]])
    strata = voxel_strata(label, tissue, brain)
    assert [STRATA[s] for s in strata.ravel()] == ["WM", "NCR", "ED", "ET", "CSF", "brain"]
    assert [STRATA[s] for s in voxel_strata(label).ravel()] == [
        "background",
        "NCR",
        "ED",
        "ET",
        "background",
        "background",
    ]


def test_stratified_quotas_are_respected_and_deterministic():
    gen = np.random.default_rng(0)
    label = np.zeros((20, 20, 20), np.uint8)
    label[2:5, 2:5, 2:5] = 3  # 27 ET voxels: fewer than the quota
    label[8:14, 8:14, 8:14] = 2  # 216 ED voxels
    tissue = gen.integers(1, 4, size=label.shape).astype(np.uint8)
    tissue[:, :, 17:] = 0
    strata = voxel_strata(label, tissue)
    quotas = {"ET": 50, "ED": 100, "WM": 30, "GM": 30, "CSF": 30, "background": 10}
    indices, taken = sample_by_stratum(strata, quotas, seed=11)
    assert taken == {"background": 10, "brain": 0, "CSF": 30, "GM": 30, "WM": 30, "NCR": 0, "ED": 100, "ET": 27}
    picked = strata.ravel()[indices]
    for name, count in taken.items():
        assert (picked == STRATUM_CODE[name]).sum() == count
    assert len(np.unique(indices)) == indices.size
    again, _ = sample_by_stratum(strata, quotas, seed=11)
    other, _ = sample_by_stratum(strata, quotas, seed=12)
    np.testing.assert_array_equal(indices, again)
    assert not np.array_equal(indices, other)
    # tumour is 1 % of this volume but a third of the sample: never only uniform
    assert np.isin(picked, [STRATUM_CODE["ED"], STRATUM_CODE["ET"]]).mean() > 0.5


def test_feature_map_rows_carry_image_coordinates_and_classes(tmp_path):
    image_shape = (16, 16, 16)
    label = np.zeros(image_shape, np.uint8)
    label[4:10, 4:10, 4:10] = 2
    label[6:8, 6:8, 6:8] = 3
    tissue = np.ones(image_shape, np.uint8)
    tissue[:, :, 8:] = 3
    grid = torch.stack(torch.meshgrid(*[torch.arange(8.0)] * 3, indexing="ij"))  # half resolution
    features = torch.cat([grid, torch.ones(1, 8, 8, 8)])  # channels: feature voxel i, j, k and 1
    rows = sample_feature_map(
        features, image_shape, label, tissue, quotas={"ED": 20, "ET": 5, "WM": 10, "CSF": 10}, seed=1
    )
    assert rows.taken == {"background": 0, "brain": 0, "CSF": 10, "GM": 0, "WM": 10, "NCR": 0, "ED": 20, "ET": 1}
    np.testing.assert_array_equal(rows.coords, rows.activations[:, :3].numpy().astype(int) * 2 + 1)
    at = tuple(rows.coords.T)
    np.testing.assert_array_equal(rows.label, label[at])
    np.testing.assert_array_equal(rows.tissue, tissue[at])
    writer = StoreWriter(tmp_path / "store", 4, dtype="float32")
    writer.add_case("c1", "adult", rows.activations, rows.coords, rows.label, rows.tissue, rows.stratum)
    shard = writer.close().read_shard(0)
    np.testing.assert_array_equal(shard["coords"].numpy(), rows.coords)
    np.testing.assert_array_equal(shard["stratum"].numpy(), rows.stratum)
