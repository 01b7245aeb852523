"""The worker as a real subprocess: protocol, progress, cancel (process tree), crashes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import WAIT_S, fault_jobs_worker, subprocess_env

from MedSegLensLib.errors import CancelledError, ParameterError
from MedSegLensLib.worker import WorkerError, WorkerProcess

pytestmark = pytest.mark.timeout(600)  # a hard stop well beyond every WAIT_S deadline


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, waiting to be reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(worker: WorkerProcess, predicate, timeout: float = WAIT_S) -> list:
    """Poll until a message satisfies `predicate`; return every message seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in worker.poll(timeout=0.2):
            seen.append(message)
            if predicate(message):
                return seen
    raise AssertionError(f"no matching message within {timeout} s; saw {seen}")


@pytest.fixture
def worker():
    with fault_jobs_worker() as process:
        yield process


def test_ping_reports_the_worker_and_its_jobs(worker):
    data = worker.run("ping", timeout=WAIT_S)
    assert data["pid"] == worker.pid != os.getpid()
    assert worker.ready is not None
    assert {"ping", "segment", "shutdown", "count"} <= set(worker.ready.fields["jobs"])


def test_progress_arrives_in_order_then_the_result(worker):
    seen = []
    request = worker.submit("count", {"steps": 6}, callback=seen.append)
    assert worker.wait(request, timeout=WAIT_S) == {"steps": 6, "pid": worker.pid}
    progress = [m for m in seen if m.type == "progress"]
    assert [m.message for m in progress] == [f"step {i} of 6" for i in range(1, 7)]
    fractions = [m.fraction for m in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert seen[-1].type == "result" and seen[-1].id == request


def test_the_worker_process_is_reused_between_requests(worker):
    first = worker.run("count", {"steps": 1}, timeout=WAIT_S)["pid"]
    second = worker.run("count", {"steps": 1}, timeout=WAIT_S)["pid"]
    assert first == second


def test_poll_does_not_block(worker):
    """A poll returns at once, long before the job's first step (10 s) could deliver a message."""
    worker.submit("count", {"steps": 3, "delay": 10})
    started = time.monotonic()
    assert worker.poll() == []
    assert time.monotonic() - started < 5, "poll must not wait for the job"
    worker.cancel()


def test_cancel_kills_the_process_tree_and_the_next_request_works(worker):
    request = worker.submit("spawn_child_and_hang")
    seen = wait_for(worker, lambda m: m.type == "progress" and m.id == request)
    child = int(seen[-1].message.split()[1])
    worker_pid = worker.pid
    output_dir = worker.output_dir(request)
    assert pid_alive(child) and pid_alive(worker_pid)
    assert any(output_dir.iterdir()), "the job had started writing"

    worker.cancel()
    messages = worker.poll()
    assert [(m.type, m.id) for m in messages] == [("cancelled", request)]
    deadline = time.monotonic() + WAIT_S
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child) and not pid_alive(worker_pid)
    assert not output_dir.exists(), "a cancelled request leaves no partial output"

    assert worker.run("count", {"steps": 2}, timeout=WAIT_S)["pid"] not in (worker_pid, None)


def test_wait_raises_cancelled_error(worker):
    request = worker.submit("spawn_child_and_hang")
    wait_for(worker, lambda m: m.type == "progress")
    worker.cancel()
    with pytest.raises(CancelledError):
        worker.wait(request, timeout=WAIT_S)


def test_sigkill_mid_write_is_reported_and_leaves_no_output(worker):
    request = worker.submit("spawn_child_and_hang")
    seen = wait_for(worker, lambda m: m.type == "progress" and m.id == request)
    child = int(seen[-1].message.split()[1])
    output_dir = worker.output_dir(request)
    assert any(p.name.startswith(".result.npy.") for p in output_dir.iterdir())

    os.kill(worker.pid, 9)
    with pytest.raises(WorkerError) as info:
        worker.wait(request, timeout=WAIT_S)
    assert info.value.kind == "WorkerCrashed"
    assert "killed by SIGKILL" in str(info.value) and "spawn_child_and_hang" in str(info.value)
    assert "\n" not in str(info.value)
    assert not output_dir.exists()
    deadline = time.monotonic() + WAIT_S
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child), "the crashed worker's children are killed too"
    assert worker.run("count", {"steps": 1}, timeout=WAIT_S)["steps"] == 1


def test_a_raising_job_gives_a_one_line_error_and_the_worker_survives(worker):
    pid = worker.run("ping", timeout=WAIT_S)["pid"]
    request = worker.submit("fail")
    with pytest.raises(WorkerError) as info:
        worker.wait(request, timeout=WAIT_S)
    assert str(info.value) == "RuntimeError: boom: something went wrong on a second line"
    assert info.value.kind == "RuntimeError"
    assert not worker.output_dir(request).exists(), "no partial output after an error"
    assert worker.run("ping", timeout=WAIT_S)["pid"] == pid


def test_a_worker_that_exits_mid_job_is_reported_with_its_last_words(worker):
    request = worker.submit("exit_now", {"code": 3})
    with pytest.raises(WorkerError) as info:
        worker.wait(request, timeout=WAIT_S)
    message = str(info.value)
    assert "exited with code 3" in message and "fatal: the worker gives up" in message
    assert worker.run("count", {"steps": 1}, timeout=WAIT_S)["steps"] == 1


def test_stdout_noise_from_a_job_does_not_break_the_protocol(worker):
    """stdout and stderr are separate pipes: collect until both noise lines and the result are in."""
    request = worker.submit("print_noise")
    expected = {"noise from print()", "noise written to fd 1"}
    seen = []

    def record(message) -> bool:
        seen.append(message)
        stderr = {m.message for m in seen if m.type == "log" and m.fields.get("level") == "stderr"}
        return expected <= stderr and any(m.type == "result" and m.id == request for m in seen)

    wait_for(worker, record)
    assert next(m for m in seen if m.type == "result").data == {"ok": True}


def test_unknown_job_and_bad_params_are_one_line_errors(worker):
    with pytest.raises(ParameterError, match="unknown job 'nope'; this worker knows"):
        worker.run("nope", timeout=WAIT_S)
    with pytest.raises(ParameterError, match="needs the parameter 'model'"):
        worker.run("segment", {}, timeout=WAIT_S)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("this is not json", "request is not valid JSON"),
        ("[1, 2]", "request must be a JSON object, got list"),
        ('{"id": "7"}', "request has no 'job' name"),
        ('{"id": "8", "job": "ping", "params": [1]}', "request 'params' must be a JSON object"),
        ('{"id": "9", "job": "ping", "extra": 1}', "request has unknown field(s) extra"),
    ],
)
def test_malformed_requests_get_a_one_line_error(worker, line, expected):
    worker.start()
    worker._proc.stdin.write(line + "\n")  # raw line, bypassing the client's encoder
    worker._proc.stdin.flush()
    seen = wait_for(worker, lambda m: m.type == "error")
    error = seen[-1]
    assert error.fields["kind"] == "ProtocolError"
    assert expected in error.message and "\n" not in error.message
    assert worker.run("ping", timeout=WAIT_S)["pid"] == worker.pid, "the worker keeps serving"


def test_bytes_that_are_not_utf8_get_a_protocol_error(worker):
    worker.start()
    worker._proc.stdin.buffer.write(b'{"id": "1", "job": "\xff\xfe"}\n')
    worker._proc.stdin.flush()
    seen = wait_for(worker, lambda m: m.type in ("error", "result"))
    assert seen[-1].type == "error" and seen[-1].id == "1"
    assert worker.run("ping", timeout=WAIT_S)["pid"] == worker.pid


def test_a_process_writing_malformed_lines_is_reported_as_a_crash(tmp_path):
    script = tmp_path / "bad_worker.py"
    script.write_text(
        "import sys, time\nsys.stdin.readline()\nprint('this is not a message', flush=True)\ntime.sleep(60)\n"
    )
    bad = WorkerProcess(command=[sys.executable, str(script)])
    try:
        request = bad.submit("ping")
        pid = bad.pid
        with pytest.raises(WorkerError, match="broke the protocol: worker message is not valid JSON"):
            bad.wait(request, timeout=WAIT_S)
        assert not pid_alive(pid), "a worker that broke the protocol is killed"
    finally:
        bad.close()


def test_a_worker_that_cannot_load_its_jobs_says_why():
    broken = WorkerProcess(env=subprocess_env(), job_modules=["no_such_module_for_medseglens"])
    try:
        with pytest.raises(WorkerError) as info:
            broken.run("ping", timeout=WAIT_S)
        assert "exited with code 1" in str(info.value)
        assert "cannot load its jobs" in str(info.value) and "no_such_module_for_medseglens" in str(info.value)
    finally:
        broken.close()


def test_close_stops_the_worker_and_removes_the_session_folder(worker):
    worker.run("ping", timeout=WAIT_S)
    pid, session = worker.pid, worker.session_dir
    assert session.is_dir()
    worker.close()
    assert not pid_alive(pid) and not session.exists() and not worker.running


def test_a_worker_whose_parent_dies_stops_with_its_children():
    """If Slicer (the client) crashes, its worker must not run on in the background."""
    script = (
        "from MedSegLensLib.worker import WorkerProcess\n"
        "import time\n"
        "w = WorkerProcess(job_modules=['Testing.worker_fault_jobs'])\n"
        "request = w.submit('spawn_child_and_hang')\n"
        "while True:\n"
        "    progress = [m for m in w.poll(timeout=0.2) if m.type == 'progress']\n"
        "    if progress:\n"
        "        print(w.pid, progress[0].message.split()[1], flush=True)\n"
        "        time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=subprocess_env())
    worker_pid, child_pid = map(int, parent.stdout.readline().split())
    assert pid_alive(worker_pid) and pid_alive(child_pid)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + WAIT_S
    while (pid_alive(worker_pid) or pid_alive(child_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(worker_pid) and not pid_alive(child_pid)
