"""The real `segment` job in a real worker on a tiny model: result, caching, faults at every stage."""

from __future__ import annotations

import os
import time

import nibabel as nib
import numpy as np
import pytest
from conftest import WAIT_S, fault_jobs_worker
from worker_cases import SHAPE, save_tiny_model, write_case

from MedSegLensLib.data import MODALITIES, read_case
from MedSegLensLib.errors import InputError, IntegrityError
from MedSegLensLib.worker import WorkerError

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-unet")


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    return write_case(tmp_path_factory.mktemp("cases"), np.random.default_rng(0))


@pytest.fixture(scope="module")
def worker():
    """One worker for the file (importing torch and MONAI costs seconds); a killed one restarts by itself."""
    with fault_jobs_worker() as process:
        yield process


def expected_labels(model_dir, case_dir):
    """What the model gives in this process, mapped back to the input's voxel order."""
    import torch

    from MedSegLensLib.models import load_model

    torch.set_num_threads(1)
    case = read_case(case_dir, with_labels=False)
    return case.to_source(load_model(model_dir, device="cpu").predict(case).labels)


def test_segment_writes_the_models_labels_in_the_inputs_geometry(worker, tiny_model, case_dir):
    progress = []
    request = worker.submit("segment", {"model": str(tiny_model), "case": str(case_dir)}, callback=progress.append)
    data = worker.wait(request, timeout=120)
    stages = [m.message for m in progress if m.type == "progress"]
    assert stages == ["loading the model", "reading the case", "running the model", "writing the segmentation", "done"]
    written = nib.load(data["segmentation"])
    reference = nib.load(case_dir / "case-001-t1n.nii.gz")
    assert written.shape == SHAPE and np.allclose(written.affine, reference.affine)
    labels = np.asarray(written.dataobj)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(labels, expected_labels(tiny_model, case_dir))
    assert data["label_voxels"] == {str(v): int((labels == v).sum()) for v in (1, 2, 3) if (labels == v).any()}
    assert data["case_id"] == "case-001" and len(data["model"]["fingerprint"]) == 64
    assert data["model"]["architecture"] == "unet"


def test_a_second_request_reuses_the_cached_model_and_case(worker, tiny_model, case_dir):
    files = {m: str(case_dir / f"case-001-{m}.nii.gz") for m in MODALITIES}
    first = worker.run("segment", {"model": str(tiny_model), "case": files, "case_id": "by-files"}, timeout=120)
    before = worker.run("ping", timeout=WAIT_S)
    assert before["cache"] == {"model": 1, "case": 1}
    second = worker.run("segment", {"model": str(tiny_model), "case": files, "case_id": "by-files"}, timeout=120)
    after = worker.run("ping", timeout=WAIT_S)
    assert after["cache_misses"] == before["cache_misses"], "nothing was loaded again"
    assert {k: after["cache_hits"].get(k, 0) - before["cache_hits"].get(k, 0) for k in ("model", "case")} == {
        "model": 1,
        "case": 1,
    }
    assert first["segmentation"] != second["segmentation"], "each request has its own output folder"
    np.testing.assert_array_equal(
        nib.load(first["segmentation"]).get_fdata(), nib.load(second["segmentation"]).get_fdata()
    )
    assert first["case_id"] == "by-files"


STAGES = ["loading the model", "reading the case", "running the model", "writing the segmentation"]


@pytest.mark.slow
def test_sigkill_at_any_stage_is_reported_and_the_next_run_works(worker, tiny_model, case_dir):
    params = {"model": str(tiny_model), "case": str(case_dir)}
    for stage in STAGES:
        request = worker.submit("segment_paused", {**params, "pause_at": stage})
        deadline = time.monotonic() + 120
        paused = False
        while not paused and time.monotonic() < deadline:
            paused = any(m.type == "log" and m.message == "paused" for m in worker.poll(timeout=0.2))
        assert paused, f"the job never reached {stage!r}"
        output_dir = worker.output_dir(request)
        os.kill(worker.pid, 9)
        with pytest.raises(WorkerError, match=r"killed by SIGKILL while running 'segment_paused'"):
            worker.wait(request, timeout=WAIT_S)
        assert not output_dir.exists(), f"partial output left after a kill while {stage!r}"
    data = worker.run("segment", params, timeout=120)
    assert nib.load(data["segmentation"]).shape == SHAPE


def test_a_tampered_model_is_refused_with_one_line(worker, tiny_model, case_dir, tmp_path):
    import shutil

    copy = tmp_path / "tampered"
    shutil.copytree(tiny_model, copy)
    weights = copy / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    request = worker.submit("segment", {"model": str(copy), "case": str(case_dir)})
    with pytest.raises(IntegrityError) as info:
        worker.wait(request, timeout=120)
    assert "weights.safetensors" in str(info.value) and "\n" not in str(info.value)
    assert not worker.output_dir(request).exists()


def test_missing_inputs_are_one_line_input_errors(worker, tiny_model, case_dir, tmp_path):
    with pytest.raises(InputError, match="no-such-model"):
        worker.run("segment", {"model": str(tmp_path / "no-such-model"), "case": str(case_dir)}, timeout=120)
    files = {m: str(case_dir / f"case-001-{m}.nii.gz") for m in MODALITIES[:3]}
    with pytest.raises(InputError, match="missing modality t2f"):
        worker.run("segment", {"model": str(tiny_model), "case": files}, timeout=120)
