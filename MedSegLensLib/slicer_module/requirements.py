"""First use in Slicer: torch through PyTorch Utils, then the other packages with pip, each after the user agrees.

torch must come from the PyTorch Utils extension, which picks the CUDA or CPU
build that fits the machine; a plain `pip install monai` would pull a default
torch instead (CPU-only on Windows, gigabytes of CUDA on Linux). So torch is
installed first, and the other packages of `Resources/requirements.txt` only
once it is there, one at a time with progress so Slicer never blocks silently.
Nothing here imports Qt: the widget passes Slicer's dialogs in as `Installer`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from ..worker import requirements as worker_requirements


@dataclass
class Installer:
    """What the module offers the user: torch through PyTorch Utils, a yes/no question, pip, progress."""

    install_torch: Callable[[], bool]  # True once torch is installed (the user may refuse)
    confirm: Callable[[str], bool]
    pip_install: Callable[[str], None]
    progress: Callable[[int, int, str], None]  # done, of, what is being installed


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def ensure_requirements(installer: Installer) -> bool:
    """Install what is missing, torch first; False when the user declined or an install did not take."""
    if not torch_available() and not (installer.install_torch() and torch_available()):
        return False
    missing = _missing()
    if not missing:
        return True
    question = (
        "MedSegLens needs these Python packages (about a minute to install):\n\n"
        + "\n".join(missing)
        + "\n\nInstall them now?"
    )
    if not installer.confirm(question):
        return False
    for done, requirement in enumerate(missing):
        installer.progress(done, len(missing), requirement)
        installer.pip_install(requirement)
    installer.progress(len(missing), len(missing), "")
    return not _missing()


def _missing() -> list[str]:
    """The lines of Resources/requirements.txt this Python does not satisfy."""
    return worker_requirements.missing_requirements(worker_requirements.read_requirements())


def slicer_installer(progress: Callable[[int, int, str], None]) -> Installer:
    """The installer inside desktop Slicer: PyTorch Utils for torch, Slicer's own dialogs and pip."""
    import slicer

    def install_torch() -> bool:
        try:
            import PyTorchUtils
        except ImportError:
            slicer.util.errorDisplay(
                "MedSegLens needs the PyTorch Utils extension for torch: install it from the "
                "Extensions Manager, restart Slicer and try again.",
                windowTitle="MedSegLens",
            )
            return False
        return PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True) is not None

    return Installer(
        install_torch=install_torch,
        confirm=lambda question: slicer.util.confirmOkCancelDisplay(question, windowTitle="MedSegLens"),
        pip_install=slicer.util.pip_install,
        progress=progress,
    )
