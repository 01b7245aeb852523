"""Helpers for the reliability suite: run the real CLI, check how a refusal looks, snapshot user files.

A refusal must be: a non-zero exit, exactly one stderr line `medseglens CMD: error: ...` that names the
file or value at fault, no traceback, no partial output, and every file the user already had unchanged.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import ROOT, subprocess_env

BATCH_SCRIPT = Path(__file__).with_name("cli_batch.py")
CLI_TIMEOUT = 300


@dataclass
class CliRun:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


_PR_CAPBSET_DROP, _CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 24, 1, 2
_PROGRESS_BAR = re.compile(r"^[^|]*\d+%\|.*\|")


def _as_ordinary_user() -> None:
    """Root ignores file modes; drop that privilege (for the exec'd process) so read-only folders are read-only.

    A no-op for an ordinary user, who cannot drop it and does not have it.
    """
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
            libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0)


def _limits(address_space: int | None = None, file_size: int | None = None):
    """preexec_fn: cap memory (a huge allocation fails instead of swapping) and file size (a 'full disk')."""

    def apply() -> None:
        _as_ordinary_user()
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        if file_size is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

    return apply


def run_cli(
    *args, env: dict | None = None, cwd=None, address_space: int | None = None, file_size: int | None = None
) -> CliRun:
    """`python -m MedSegLensLib ARGS` in a fresh process, as a user would run it."""
    argv = [str(a) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "MedSegLensLib", *argv],
        capture_output=True,
        text=True,
        env=env or subprocess_env(),
        cwd=cwd or ROOT,
        timeout=CLI_TIMEOUT,
        preexec_fn=_limits(address_space, file_size),
    )
    return CliRun(argv, done.returncode, done.stdout, done.stderr)


def run_cli_batch(commands: list[list], folder: Path) -> list[CliRun]:
    """Several CLI invocations in ONE fresh process (`cli_batch.py`): each gets the real `main(argv)` and its
    own stderr file descriptor, so torch and MONAI are imported once instead of once per bad input."""
    plan = folder / "cli-batch.json"
    plan.write_text(json.dumps([[str(a) for a in argv] for argv in commands]))
    done = subprocess.run(
        [sys.executable, str(BATCH_SCRIPT), str(plan)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=ROOT,
        timeout=CLI_TIMEOUT,
        preexec_fn=_limits(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(Path(str(plan) + ".out").read_text())
    return [CliRun(r["argv"], r["returncode"], r["stdout"], r["stderr"]) for r in results]


def assert_refused(run: CliRun, *words: str) -> str:
    """The one-line refusal contract; returns the message."""
    command = run.argv[0]
    assert run.returncode not in (0, None), f"{run.argv} succeeded: {run.stdout[-500:]}"
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    lines = error_lines(run.stderr)
    assert len(lines) == 1, f"{run.argv}: expected one stderr line, got {lines}"
    assert lines[0].startswith(f"medseglens {command}: error: "), lines[0]
    for word in words:
        assert str(word) in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]


def error_lines(stderr: str) -> list[str]:
    """stderr without progress-bar frames (tqdm redraws them with \\r; a long job shows one by design)."""
    frames = re.split(r"[\r\n]+", stderr)
    return [f for f in frames if f.strip() and not _PROGRESS_BAR.match(f)]


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder` (hidden ones too) with its sha256 and mode."""
    state = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            state[str(path.relative_to(folder))] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode)
    return state


def leftovers(folder: Path, before: dict) -> list[str]:
    """Files under `folder` that were not in the snapshot `before` (partial outputs, temporaries)."""
    return sorted(set(snapshot(folder)) - set(before))


def build_corpus(corpus: dict, root: Path, *context) -> dict:
    """Build each bad input (`build(*context, folder)` -> argv, words) in a numbered folder of its own.

    Returns name -> (folder, argv, words, snapshot of the folder before the command).
    """
    plans = {}
    for number, (name, build) in enumerate(corpus.items()):
        folder = root / f"{number:02d}"
        folder.mkdir()
        argv, words = build(*context, folder)
        plans[name] = (folder, argv, words, snapshot(folder))
    return plans


def run_corpus(plans: dict, root: Path, extra_commands=(), read_only_folders=()) -> tuple[dict, list[CliRun]]:
    """Run every plan's command (then `extra_commands`) in one fresh process, with some folders read-only."""
    restores = [read_only(folder) for folder in read_only_folders]
    try:
        runs = run_cli_batch([plan[1] for plan in plans.values()] + list(extra_commands), root)
    finally:
        for restore in restores:
            restore()
    results = {name: (*plan, run) for (name, plan), run in zip(plans.items(), runs)}
    return results, runs[len(plans) :]


def check_refusal(results: dict, name: str) -> None:
    """One refusal of a corpus: the one-line contract, and its folder exactly as it was."""
    folder, _, words, before, run = results[name]
    assert_refused(run, *map(str, words))
    assert snapshot(folder) == before, "the user's files were changed or new files were left"


def read_only(folder: Path):
    """Make `folder` read-only; returns a function that restores it (tmp_path cleanup needs write access)."""
    mode = folder.stat().st_mode
    os.chmod(folder, 0o555)
    return lambda: os.chmod(folder, mode)
