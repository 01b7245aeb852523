"""Every Slicer, VTK, Qt and CTK name the module calls in Slicer's process exists in the oldest supported Slicer.

The names are those Slicer's own source declares at v5.10.0 (C++ headers of Base/, Libs/, Modules/ and the Python of
Base/Python), stored in Resources/SlicerAPI/ by `Testing/slicer_api_names.py`, plus the names v5.8.0 lacks
(`vtkSegment::SetTerminology` is declared in Libs/vtkSegmentationCore/vtkSegment.h from v5.10.0 on).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import slicer_api_names as api

from MedSegLensLib.slicer_module.compatibility import MINIMUM_SLICER, MINIMUM_SLICER_TEXT, unsupported_slicer


def test_the_module_calls_only_names_of_the_oldest_supported_slicer():
    assert api.unknown_names(api.MINIMUM_TAG) == {}


def test_slicer_5_8_lacks_the_terminology_methods_the_module_calls():
    unknown = api.unknown_names(api.OLDER_TAG)
    assert set(unknown) == {"SetTerminology", "GetTerminology"}
    assert unknown["SetTerminology"].startswith("MedSegLensLib/scene/")


def test_the_check_flags_a_call_slicer_does_not_declare(tmp_path):
    code = tmp_path / "module.py"
    code.write_text(
        "import os\nimport slicer\n"
        "def f(segment, node):\n"
        "    segment.SetBratsTerminology('x')\n"  # no such method in any Slicer
        "    slicer.pydeps.pip_ensure([])\n"  # slicer.pydeps exists in no Slicer
        "    node.GetDisplayNode().SetVisibility(1)\n"  # real
        "    return os.PathLike, slicer.util.pip_install\n"
    )
    assert set(api.unknown_names(api.MINIMUM_TAG, [code])) == {"SetBratsTerminology", "pydeps", "pip_ensure"}


def test_the_stored_lists_name_their_tag_and_every_hand_listed_name_is_used():
    assert (
        Path(api.API_FOLDER / f"names-{api.MINIMUM_TAG}.txt")
        .read_text()
        .startswith(f"# names declared in Slicer's source at {api.MINIMUM_TAG}")
    )
    assert api.MINIMUM_TAG == "v{}.{}.0".format(*MINIMUM_SLICER)
    used = set()
    for path in api.slicer_process_files():
        used |= set(api.used_names(path))
    assert api._read("third-party.txt") <= used


def test_the_minimum_is_declared_in_cmake_and_readme_and_checked_at_start_up():
    declared = f"Slicer {MINIMUM_SLICER[0]}.{MINIMUM_SLICER[1]}"
    assert re.search(rf"EXTENSION_DESCRIPTION \"[^\"]*{declared}", (api.REPO / "CMakeLists.txt").read_text())
    assert declared in (api.REPO / "README.md").read_text()
    assert "unsupported_slicer(" in (api.REPO / "MedSegLens" / "MedSegLens.py").read_text()
    message = unsupported_slicer(5, 8)
    assert MINIMUM_SLICER_TEXT in message and "5.8" in message
    assert unsupported_slicer(*MINIMUM_SLICER) is None and unsupported_slicer(6, 0) is None


def test_an_older_slicer_opens_the_module_to_a_message_not_a_traceback(monkeypatch):
    pytest.importorskip("slicer")
    from fake_slicer_gui import open_widget

    widget = open_widget(monkeypatch, version=(5, 8))
    shown = [w.text for w in widget.parent.widgets]
    assert shown == [unsupported_slicer(5, 8)] and widget.logic is None
    widget.enter()
    widget.exit()
    widget.cleanup()


def test_what_loads_before_the_version_check_is_valid_in_slicer_5_8s_python():
    """Slicer 5.8 runs Python 3.9.10 (Slicer's CMakeLists.txt at v5.8.0: Slicer_REQUIRED_PYTHON_VERSION), 5.10 runs
    3.12.10: the module file and every library module it imports at load must parse as 3.9, or an older Slicer
    shows a SyntaxError instead of the version message."""
    import ast
    import subprocess
    import sys

    from conftest import subprocess_env

    tree = ast.parse((api.REPO / "MedSegLens" / "MedSegLens.py").read_text())
    imported = [n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module.startswith("MedSegLensLib")]
    code = (
        f"import sys, {', '.join(imported)}; "
        "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.startswith('MedSegLensLib')))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), cwd=api.REPO, timeout=120
    )
    files = [api.REPO / "MedSegLens" / "MedSegLens.py", *map(Path, run.stdout.split())]
    assert run.returncode == 0 and len(files) > len(imported), run.stderr
    for path in files:
        ast.parse(path.read_text(), str(path), feature_version=(3, 9))
