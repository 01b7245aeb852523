#!/usr/bin/env python3
"""Bootstrap for the README's two commands: a local virtual environment, then the job.

    python3 dev.py demo [ARGS...]   # build the demo workspace, then serve it (see README)
    python3 dev.py test [PYTEST_ARGS...]
    python3 dev.py lint             # ruff (lint and format check) and the layer contracts (lint-imports)

Everything installs from the package registries into ./.venv, pinned by
requirements/constraints.txt (torch stays at the CPU build 2.13.0). The install
is skipped when pyproject.toml and the constraints have not changed since the
last one. Only the standard library is used here, on purpose.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("MEDSEGLENS_VENV", ROOT / ".venv"))
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
STAMP = VENV / ".medseglens-install-stamp"
# One environment serves both jobs, so switching between them never reinstalls.
EXTRAS = {"demo": "viewer,test,byom", "test": "viewer,test,byom", "lint": "viewer,test,byom"}
# Installed with --no-deps for the byom extra: their declared dependencies would replace torch (see the file).
NO_DEPS = ROOT / "requirements" / "no-deps.txt"
CHROMIUM = Path("/usr/bin/chromium")


def _python() -> Path:
    return VENV / "bin" / "python"


def _run(cmd: list[str], **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def _install_fingerprint(extras: str) -> str:
    digest = hashlib.sha256(extras.encode())
    for path in (ROOT / "pyproject.toml", CONSTRAINTS, NO_DEPS):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_environment(extras: str) -> None:
    """Create ./.venv and install the project with `extras`, unless already done."""
    fingerprint = _install_fingerprint(extras)
    if STAMP.exists() and STAMP.read_text() == fingerprint:
        return
    if not _python().exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [_python(), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", CONSTRAINTS]
    _run([_python(), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    # torch first: an unpinned dependency resolution would pull a CUDA build.
    _run(pip + ["torch==2.13.0"])
    _run(pip + ["-e", f"{ROOT}[{extras}]"])
    if "byom" in extras.split(","):
        _run(pip + ["--no-deps", "-r", NO_DEPS])
    STAMP.write_text(fingerprint)


def ensure_chromium() -> None:
    """The browser tests drive Debian's Chromium; install it when we are allowed to."""
    if CHROMIUM.exists() or shutil.which("chromium"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print("dev.py: chromium not found and cannot apt-get it; browser tests will be skipped", flush=True)
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update", "-qq"], env=env)
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], env=env)


def lint() -> int:
    """Every check, even after one fails, so one run shows everything to fix; non-zero if any failed."""
    bin_dir = VENV / "bin"
    checks = [
        [bin_dir / "ruff", "check", "."],
        [bin_dir / "ruff", "format", "--check", "."],
        [bin_dir / "lint-imports"],
    ]
    failed = 0
    for cmd in checks:
        print("+", " ".join(str(c) for c in cmd), flush=True)
        failed += subprocess.call([str(c) for c in cmd], cwd=ROOT) != 0
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in EXTRAS:
        print(__doc__)
        return 2
    job, rest = argv[0], argv[1:]
    ensure_environment(EXTRAS[job])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if job == "lint":
        return lint()
    if job == "test":
        ensure_chromium()
        cmd = [str(_python()), "-m", "pytest", *rest]
    else:
        cmd = [str(VENV / "bin" / "medseglens"), "demo", *rest]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
