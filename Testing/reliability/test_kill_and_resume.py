"""Real commands SIGKILLed at exact points (MEDSEGLENS_PAUSE_AT) and run again.

- `train` killed after epoch 1's checkpoint: `--resume` gives the weights of an uninterrupted run.
- `sae extract` killed between a shard and its manifest commit, then after case 2: `--resume` twice gives
  the store of an uninterrupted run, shard for shard.
- `segment` killed after writing its temporary, before the rename: no output; the next run writes it and
  removes the dead process's temporary.
(The worker killed while loading, reading, running or writing: Testing/test_worker_segment.py.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, subprocess_env
from models_support import write_cohort
from worker_cases import save_tiny_model, write_case

from MedSegLensLib.models import load_model, tiny_config
from MedSegLensLib.models.checkpoint import has_checkpoint
from MedSegLensLib.sae import ActivationStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # fresh processes that import torch: minutes
LAYER = "model.1.submodule.0"


def start(args, pause_at: str | None = None) -> subprocess.Popen:
    env = subprocess_env()
    env["MEDSEGLENS_TEST_THREADS"] = "1"
    if pause_at:
        env["MEDSEGLENS_PAUSE_AT"] = pause_at
    return subprocess.Popen(
        [sys.executable, "-m", "MedSegLensLib", *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when_paused(process: subprocess.Popen, point: str, timeout: float = 300) -> None:
    """Read stderr until the process reports the pause point, then SIGKILL it."""
    deadline = time.monotonic() + timeout
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.rstrip().endswith(f"medseglens: paused at {point}"):  # maybe after an unfinished progress bar
            process.send_signal(signal.SIGKILL)
            assert process.wait(60) == -signal.SIGKILL
            return
        assert time.monotonic() < deadline, "".join(seen[-20:])
    raise AssertionError(f"the command ended without reaching {point}: {''.join(seen[-20:])}")


def finish(process: subprocess.Popen) -> str:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return err


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_cohort(tmp_path_factory.mktemp("cohort"), 3, seed=5)


def test_training_killed_after_a_checkpoint_resumes_to_the_uninterrupted_weights(tmp_path, cohort):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config("unet").to_json()))
    common = [
        "train",
        "--config",
        config,
        "--data",
        cohort,
        "--epochs",
        "3",
        "--seed",
        "1",
        "--batch-size",
        "2",
        "--val-fraction",
        "0",
        "--device",
        "cpu",
    ]
    reference = start([*common, "--out", tmp_path / "reference"])
    killed = start([*common, "--out", tmp_path / "run"], pause_at="train:epoch-1")
    kill_when_paused(killed, "train:epoch-1")
    assert has_checkpoint(tmp_path / "run") and not (tmp_path / "run" / "model.json").exists()
    finish(start([*common, "--out", tmp_path / "run", "--resume"]))
    finish(reference)
    resumed, uninterrupted = load_model(tmp_path / "run", "cpu"), load_model(tmp_path / "reference", "cpu")
    assert resumed.fingerprint == uninterrupted.fingerprint
    assert [r["epoch"] for r in resumed.provenance["history"]] == [1, 2, 3]
    assert not has_checkpoint(tmp_path / "run")


def _stores_equal(a: Path, b: Path) -> None:
    first, second = ActivationStore(a), ActivationStore(b)
    assert first.cases == second.cases and len(first.shards) == len(second.shards) == 3
    for shard in range(len(first.shards)):
        for name, column in first.read_shard(shard).items():
            assert torch.equal(column, second.read_shard(shard)[name]), (shard, name)


def test_extraction_killed_twice_resumes_to_the_uninterrupted_store(tmp_path, cohort):
    model = save_tiny_model(tmp_path / "model")
    common = [
        "sae",
        "extract",
        "--model",
        model,
        "--layer",
        LAYER,
        "--data",
        cohort,
        "--seed",
        "2",
        "--quota",
        "brain=40",
        "--quota",
        "ED=20",
        "--device",
        "cpu",
    ]
    reference = start([*common, "--out", tmp_path / "reference"])
    store = tmp_path / "store"
    kill_when_paused(start([*common, "--out", store], pause_at="store:before-commit"), "store:before-commit")
    orphans = sorted(p.name for p in store.glob("shard-*"))
    assert orphans and json.loads((store / "manifest.json").read_text())["shards"] == []
    kill_when_paused(start([*common, "--out", store, "--resume"], pause_at="extract:case-2"), "extract:case-2")
    assert len(json.loads((store / "manifest.json").read_text())["cases"]) == 2
    finish(start([*common, "--out", store, "--resume"]))
    finish(reference)
    _stores_equal(store, tmp_path / "reference")
    assert not [p for p in store.iterdir() if ".partial" in p.name]


def test_segment_killed_before_its_rename_leaves_no_output_and_the_next_run_cleans_up(tmp_path):
    model = save_tiny_model(tmp_path / "model")
    case = write_case(tmp_path / "cases", __import__("numpy").random.default_rng(0))
    out = tmp_path / "out" / "seg.nii.gz"
    args = ["segment", "--model", model, "--case", case, "--out", out, "--device", "cpu"]
    kill_when_paused(start(args, pause_at="write:seg.nii.gz"), "write:seg.nii.gz")
    left = list(out.parent.iterdir())
    assert not out.exists() and len(left) == 1 and left[0].name.startswith(".seg.nii.gz.")
    finish(start(args))
    assert [p.name for p in out.parent.iterdir()] == ["seg.nii.gz"]
