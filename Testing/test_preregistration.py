"""Both pre-registered benchmarks (steering, triage) load their committed protocol through one set of rules."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, load_bench

from MedSegLensLib.errors import InputError
from MedSegLensLib.preregistration import bind_results
from MedSegLensLib.steering.study.protocol import Protocol


def _triage_protocol_class():
    return load_bench("triage").TriageProtocol


def test_the_committed_protocols_load_and_bind_their_results_apart(tmp_path):
    triage = _triage_protocol_class().load(ROOT / "bench" / "triage_protocol.json")
    steering = Protocol.load(ROOT / "bench" / "steering_protocol.json")
    assert {c["role"] for c in triage.cohorts()} == {"calibration", "test"}
    assert len(triage.cohorts("test")) == 5 and all(c["role"] == "test" for c in triage.cohorts("test"))
    assert bind_results(triage, tmp_path / "triage", "abc")["name"] == "triage-v1"
    assert bind_results(steering, tmp_path / "steering", "abc")["sha256"] == steering.sha256 != triage.sha256


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["cohorts"][0].update(role="train"), "has role 'train', not one of"),
        (lambda d: d["cohorts"][1].update(seed=d["cohorts"][0]["seed"]), "share a seed"),
        (lambda d: d.pop("scores"), "has no 'scores'"),
    ],
)
def test_a_triage_protocol_outside_the_rules_is_refused(tmp_path, change, message):
    data = json.loads((ROOT / "bench" / "triage_protocol.json").read_text())
    change(data)
    path = tmp_path / "protocol.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message):
        _triage_protocol_class().load(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        _triage_protocol_class().load(path)
