"""Run several `medseglens` command lines in one process: `python cli_batch.py PLAN.json` -> PLAN.json.out.

Each command line goes through the real `MedSegLensLib.cli.main.main(argv)` with file descriptors 1 and 2
redirected to files of its own (so library warnings written at the C or Python level are caught too). An
exception escaping `main` is recorded with its traceback, as a user would see it. Used by the reliability
tests for commands that import torch, which costs seconds per process on the shared CPUs.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import traceback
import warnings


@contextlib.contextmanager
def captured(fd: int, stream, into: dict, key: str):
    """Point `fd` (and so `stream`) at a temporary file; store what was written in `into[key]`."""
    stream.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            stream.flush()
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            into[key] = sink.read().decode("utf-8", "replace")


def forget_shown_warnings() -> None:
    """Python shows a warning once per place and process; each command must show what a fresh process would."""
    warnings.onceregistry.clear()
    for module in list(sys.modules.values()):
        registry = getattr(module, "__warningregistry__", None)
        if isinstance(registry, dict):
            registry.clear()


def run_one(argv: list[str]) -> dict:
    from MedSegLensLib.cli.main import main

    forget_shown_warnings()
    record: dict = {"argv": argv}
    with captured(1, sys.stdout, record, "stdout"), captured(2, sys.stderr, record, "stderr"):
        try:
            record["returncode"] = main(argv)
        except SystemExit as exc:  # argparse refusals
            record["returncode"] = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - a bug: report it as the interpreter would
            traceback.print_exc()
            record["returncode"] = 1
    return record


def main() -> int:
    plan = sys.argv[1]
    with open(plan, encoding="utf-8") as handle:
        commands = json.load(handle)
    results = [run_one(argv) for argv in commands]
    with open(plan + ".out", "w", encoding="utf-8") as handle:
        json.dump(results, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
