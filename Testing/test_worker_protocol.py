"""The line protocol, the job registry, the cache and the server loop (in-process)."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest

from MedSegLensLib.errors import InputError, ParameterError
from MedSegLensLib.worker import protocol
from MedSegLensLib.worker.registry import JobContext, JobRegistry, WorkerCache, folder_fingerprint
from MedSegLensLib.worker.server import WorkerServer


def serve(lines: list[str], **jobs) -> list[dict]:
    registry = JobRegistry()
    for name, handler in jobs.items():
        registry.add(name, handler)
    out = io.StringIO()
    WorkerServer(registry, out).serve(lines)
    text = out.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_requests_round_trip_and_messages_stay_on_one_line():
    request = protocol.Request("4", "segment", {"model": "/m", "note": "a\nb"}, "/out/4")
    assert protocol.parse_request(request.to_line()) == request
    line = protocol.encode(protocol.error("4", "first line\nsecond line"))
    assert "\n" not in line and json.loads(line)["message"] == "first line second line"


def test_messages_are_validated():
    assert protocol.parse_message('{"type":"progress","id":"1","fraction":0.5,"message":"x"}').fraction == 0.5
    for bad in (
        '{"type":"progress","id":"1","fraction":1.5}',
        '{"type":"progress","id":"1","fraction":NaN}',
        '{"type":"result","data":{}}',
        '{"type":"shout","id":"1"}',
        "[]",
        "{",
    ):
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_message(bad)


def test_numpy_values_and_paths_encode():
    from pathlib import Path

    obj = json.loads(protocol.encode({"n": np.int64(3), "a": np.arange(2), "p": Path("/x")}))
    assert obj == {"n": 3, "a": [0, 1], "p": "/x"}
    with pytest.raises(ValueError):
        protocol.encode({"bad": float("nan")})


def test_progress_is_clamped_and_never_goes_backwards():
    sent = []
    ctx = JobContext("1", sent.append, WorkerCache())
    for fraction in (0.2, 0.1, 0.5, 7.0, -1.0):
        ctx.progress(fraction, "x")
    assert [m["fraction"] for m in sent] == [0.2, 0.2, 0.5, 1.0, 1.0]


def test_output_names_cannot_leave_the_output_folder(tmp_path):
    ctx = JobContext("1", lambda m: None, WorkerCache(), tmp_path / "out")
    assert ctx.output_path("seg.nii.gz") == tmp_path / "out" / "seg.nii.gz"
    for name in ("../escape.nii.gz", "a/b.nii", "..", ""):
        with pytest.raises(ParameterError):
            ctx.output_path(name)


def test_cache_keeps_the_latest_per_kind():
    cache = WorkerCache(per_kind=1)
    made = []
    make = lambda key: lambda: made.append(key) or key  # noqa: E731
    assert cache.get_or_create("model", "a", make("a")) == "a"
    assert cache.get_or_create("model", "a", make("a2")) == "a"
    cache.get_or_create("case", "c", make("c"))
    cache.get_or_create("model", "b", make("b"))
    cache.get_or_create("model", "a", make("a3"))
    assert made == ["a", "c", "b", "a3"] and cache.kinds() == {"model": 1, "case": 1}
    assert cache.hits == {"model": 1} and cache.misses == {"model": 3, "case": 1}


def test_fingerprint_changes_when_a_file_changes(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"1234")
    before = folder_fingerprint(tmp_path)
    assert folder_fingerprint(tmp_path) == before
    (tmp_path / "weights.safetensors").write_bytes(b"12345")
    assert folder_fingerprint(tmp_path) != before


def test_registry_refuses_duplicates_and_names_known_jobs():
    registry = JobRegistry()
    registry.add("a", lambda p, c: {})
    with pytest.raises(ValueError):
        registry.add("a", lambda p, c: {})
    with pytest.raises(ParameterError, match="unknown job 'b'; this worker knows a"):
        registry.get("b")


def test_server_replies_in_order_and_survives_bad_jobs():
    def ok(params, ctx):
        ctx.progress(0.5, "half")
        return {"echo": params["x"]}

    def user_error(params, ctx):
        raise InputError("/data/t1.nii.gz: file not found")

    def not_a_dict(params, ctx):
        return [1]

    def not_json(params, ctx):
        return {"x": object()}

    lines = [
        protocol.Request(str(i), job, {"x": i}).to_line()
        for i, job in enumerate(["ok", "user_error", "not_a_dict", "not_json", "missing"])
    ]
    lines += ["", "{broken", protocol.Request("9", "ok", {"x": 9}).to_line()]
    replies = serve(lines, ok=ok, user_error=user_error, not_a_dict=not_a_dict, not_json=not_json)
    kinds = [(r["type"], r.get("id"), r.get("kind")) for r in replies]
    assert kinds == [
        ("ready", None, None),
        ("progress", "0", None),
        ("result", "0", None),
        ("error", "1", "InputError"),
        ("error", "2", "TypeError"),
        ("error", "3", "TypeError"),
        ("error", "4", "ParameterError"),
        ("error", None, "ProtocolError"),
        ("progress", "9", None),
        ("result", "9", None),
    ]
    assert replies[3]["message"] == "/data/t1.nii.gz: file not found"
    assert replies[-1]["data"] == {"echo": 9}


def test_a_missing_package_names_itself():
    def needs_package(params, ctx):
        import medseglens_package_that_does_not_exist  # noqa: F401

    replies = serve([protocol.Request("1", "needs", {}).to_line()], needs=needs_package)
    assert replies[-1]["kind"] == "MissingDependency"
    assert "'medseglens_package_that_does_not_exist'" in replies[-1]["message"]


def test_shutdown_stops_the_loop():
    lines = [protocol.Request("1", "shutdown").to_line(), protocol.Request("2", "ping").to_line()]
    replies = serve(lines)
    assert [(r["type"], r.get("id")) for r in replies] == [("ready", None), ("result", "1")]
    assert replies[-1]["data"]["pid"] == os.getpid()
