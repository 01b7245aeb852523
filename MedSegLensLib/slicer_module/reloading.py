"""The module's Reload button: reload the library too (Python 3.12 has no `imp`; importlib.reload does it).

Kept apart from `logic` so Reload works before the first-use packages are installed.
"""

from __future__ import annotations

import importlib
import sys


def reload_library(package: str = "MedSegLensLib") -> list[str]:
    """Reload every loaded module of `package`, deepest first (the module's `onReload`)."""
    names = sorted(
        (n for n in sys.modules if n == package or n.startswith(package + ".")), key=lambda n: (-n.count("."), n)
    )
    for name in names:
        importlib.reload(sys.modules[name])
    return names
