"""Case-sharded extraction on 2 gloo ranks (real torchrun, loopback) against a single-process store."""

from __future__ import annotations

import json
import os

import pytest
from distributed_jobs import LAYER, extraction_settings
from distributed_support import run_torchrun, run_torchrun_module, set_torchrun_env
from models_support import one_thread, write_cohort  # noqa: F401 (fixtures)
from worker_cases import save_tiny_model

from MedSegLensLib.data import discover_cohort
from MedSegLensLib.distributed import extract_activations_distributed, joined
from MedSegLensLib.distributed.extraction import part_folder
from MedSegLensLib.errors import CompatibilityError, OutputError
from MedSegLensLib.models import load_model
from MedSegLensLib.sae import ActivationStore, SAETrainingSettings, load_sae
from MedSegLensLib.sae.extract import extract_activations
from MedSegLensLib.sae.fit import fit_layer_sae

CASES = 5


@pytest.fixture(scope="module")
def inputs(workdir):
    """A 5-case cohort, a tiny U-Net and the store one process extracts from them."""
    cohort = write_cohort(workdir / "cohort", CASES, seed=7)
    model_dir = save_tiny_model(workdir / "model")
    model = load_model(model_dir, device="cpu")
    single = extract_activations(model, LAYER, discover_cohort(cohort), workdir / "single", **extraction_settings())
    return cohort, model_dir, single


def rows_of(store: ActivationStore) -> set[tuple]:
    """Every row with all its metadata, keyed by case id (not by the shard it sits in)."""
    rows = set()
    for acts, meta in store.scan_with_metadata(4096):
        for i in range(acts.shape[0]):
            rows.add(
                (
                    store.cases[int(meta["case_index"][i])]["case_id"],
                    tuple(meta["coords"][i].tolist()),
                    int(meta["label"][i]),
                    int(meta["tissue"][i]),
                    int(meta["stratum"][i]),
                    acts[i].numpy().tobytes(),
                )
            )
    return rows


def assert_same_store(sharded: ActivationStore, single: ActivationStore) -> None:
    sharded.verify()
    assert sharded.cases == single.cases  # same case table, same order, same rows per case
    assert (sharded.info, sharded.d_in, sharded.manifest["dtype"]) == (
        single.info,
        single.d_in,
        single.manifest["dtype"],
    )
    assert rows_of(sharded) == rows_of(single) and sharded.n_rows == single.n_rows
    assert sorted(p.name for p in sharded.path.iterdir()) == ["manifest.json"] + [
        f"shard-{i:06d}.safetensors" for i in range(len(sharded.shards))
    ]  # parts merged and removed
    # extraction commits case by case, so the shards line up with one process's, byte for byte
    assert sharded.manifest == single.manifest


@pytest.mark.slow
def test_torchrun_sae_train_on_two_ranks_extracts_and_trains_like_one_process(inputs, tmp_path):
    """`torchrun --nproc-per-node 2 -m MedSegLensLib sae train --data ...`: sharded capture, then DP training."""
    cohort, model_dir, single = inputs
    settings = extraction_settings()
    quotas = [arg for name, n in settings["quotas"].items() for arg in ("--quota", f"{name}={n}")]
    sae_args = ["--latents", "32", "--k", "4", "--kind", "batchtopk", "--rows", "3840", "--batch-size", "64"]
    done = run_torchrun_module(
        2,
        "sae",
        "train",
        "--model",
        str(model_dir),
        "--data",
        str(cohort),
        "--layer",
        LAYER,
        "--store",
        str(tmp_path / "store"),
        "--out",
        str(tmp_path / "sae"),
        "--seed",
        str(settings["seed"]),
        "--device",
        "cpu",
        *quotas,
        *sae_args,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count(f"wrote {tmp_path / 'sae'}: batchtopk SAE, 8 -> 32 latents") == 2  # every rank reports
    assert_same_store(ActivationStore(tmp_path / "store"), single)
    assert sorted(os.listdir(tmp_path)) == ["sae", "store"]  # written once, checkpoints removed

    config = SAETrainingSettings(
        n_latents=32, k=4, kind="batchtopk", total_rows=3840, batch_size=64, seed=settings["seed"], checkpoint_every=50
    )
    model = load_model(model_dir, device="cpu")
    reference, _ = fit_layer_sae(model, LAYER, single, tmp_path / "one-process", config, show_progress=False)
    parallel = load_sae(tmp_path / "sae")
    assert parallel.info.model_fingerprint == model.fingerprint and parallel.info.layer == LAYER
    for name in ("W_dec", "W_enc", "b_enc", "b_dec", "threshold"):
        a, b = getattr(parallel, name).detach(), getattr(reference, name).detach()
        assert float((a - b).norm()) <= 0.02 * float(b.norm()), name


@pytest.mark.slow
def test_a_killed_rank_loses_no_committed_case_and_the_rerun_resumes(inputs, tmp_path):
    cohort, model_dir, single = inputs
    store, logs = tmp_path / "store", tmp_path / "logs"
    logs.mkdir()
    args = ["extract", str(model_dir), str(cohort), str(store), str(logs)]
    killed = run_torchrun(2, *args, "--kill-rank", "1", "--kill-step", "1")
    assert killed.returncode != 0
    assert not (store / "manifest.json").exists()  # nothing merged
    part = json.loads((part_folder(store, 1, 2) / "manifest.json").read_text())
    assert part["state"] == "writing" and len(part["cases"]) == 1  # rank 1 committed one case, then died

    (logs / "extract-rank1.jsonl").unlink()
    resumed = run_torchrun(2, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    seen = [json.loads(line) for line in (logs / "extract-rank1.jsonl").read_text().splitlines()]
    assert seen[0] == {"case_id": part["cases"][0]["case_id"], "skipped": True}
    assert not any(entry["skipped"] for entry in seen[1:])
    assert_same_store(ActivationStore(store), single)


@pytest.fixture
def one_rank_group(monkeypatch):
    """A real gloo process group of one process, in this process (loopback)."""
    set_torchrun_env(monkeypatch)
    with joined() as group:
        yield group


def test_reruns_are_refused_or_resumed_like_a_single_process_capture(inputs, tmp_path, one_rank_group):
    cohort, model_dir, single = inputs
    model = load_model(model_dir, device="cpu")
    cases = discover_cohort(cohort)

    def extract(folder: str, **flags):
        return extract_activations_distributed(
            model, LAYER, cases, tmp_path / folder, one_rank_group, **extraction_settings(), **flags
        )

    part_folder(tmp_path / "started", 0, 1).mkdir(parents=True)  # an interrupted 1-rank run
    with pytest.raises(OutputError, match="pass --resume to continue it"):
        extract("started")
    part_folder(tmp_path / "store", 0, 2).mkdir(parents=True)  # left by a 2-rank run
    with pytest.raises(CompatibilityError, match="another number of ranks"):
        extract("store", resume=True)
    store = extract("store", overwrite=True)
    assert_same_store(store, single)
    with pytest.raises(OutputError, match="already complete"):
        extract("store", resume=True)
    assert sorted(os.listdir(store.path)) == ["manifest.json"] + [s["file"] for s in store.shards]  # left as it was
