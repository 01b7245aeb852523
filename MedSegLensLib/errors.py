"""User-facing errors.

Anything a user can cause (a bad file, a wrong parameter, a model and SAE that do
not belong together) raises a `MedSegLensError` whose message is one line that
says what is wrong and what to do. The CLI prints it without a traceback and
exits non-zero; anything else is a bug and keeps its traceback.
"""


class MedSegLensError(Exception):
    """An expected error with a one-line, actionable message."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class InputError(MedSegLensError):
    """An input file or folder is missing, unreadable or inconsistent."""


class ParameterError(MedSegLensError):
    """A command-line or API parameter is out of range or contradictory."""


class CompatibilityError(MedSegLensError):
    """Two artefacts do not belong together (e.g. an SAE trained on another model or layer)."""


class IntegrityError(MedSegLensError):
    """A saved artefact was modified or is incomplete (hash or manifest mismatch)."""


class OutputError(MedSegLensError):
    """An output cannot be written (exists, read-only, disk full)."""


class CancelledError(MedSegLensError):
    """The user cancelled a long-running job."""

    exit_code = 130
