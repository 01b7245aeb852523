"""The Slicer extension's files: the module compiles, its .ui matches the code, CMake is consistent.

Desktop Slicer cannot run here, so the module is checked as source: compiled,
parsed, and its CMake run by the real cmake against stand-ins of Slicer's build
macros that only record what they were given (`SlicerMacroStandIns`).
"""

from __future__ import annotations

import ast
import py_compile
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import tomllib
from conftest import subprocess_env

from MedSegLensLib.latent_browser import COLUMNS
from MedSegLensLib.worker.requirements import missing_requirements, read_requirements, requirements_file

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "MedSegLens"
MODULE_PY = MODULE_DIR / "MedSegLens.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "MedSegLens.ui"
# The widget's panel sections live in the library (MedSegLens.py stays thin) and use self.ui too.
WIDGET_SOURCES = [MODULE_PY, *sorted((ROOT / "MedSegLensLib" / "slicer_module").glob("section_*.py"))]


def module_tree() -> ast.Module:
    return ast.parse(MODULE_PY.read_text(encoding="utf-8"))


def ui_widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI_FILE).getroot().iter("widget")}


def test_the_module_compiles(tmp_path):
    py_compile.compile(str(MODULE_PY), cfile=str(tmp_path / "MedSegLens.pyc"), doraise=True)


def test_the_module_has_the_scripted_module_classes():
    classes = {
        node.name: [ast.unparse(b) for b in node.bases] for node in module_tree().body if isinstance(node, ast.ClassDef)
    }
    assert classes["MedSegLens"] == ["ScriptedLoadableModule"]
    assert "ScriptedLoadableModuleWidget" in classes["MedSegLensWidget"]
    assert classes["MedSegLensLogic"] == ["ScriptedLoadableModuleLogic"]
    assert classes["MedSegLensTest"] == ["SelfTestSteps", "ScriptedLoadableModuleTest"]


def test_importing_the_module_installs_nothing_and_loads_no_heavy_library():
    """Top-level imports are Slicer's, the standard library's and light library modules that need none of the
    packages installed on first use (a fresh Slicer must load the module before anything is installed)."""
    tree = module_tree()
    top_level, library = set(), []
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            top_level.add((node.module or "").split(".")[0])
            library += [node.module] if (node.module or "").startswith("MedSegLensLib") else []
    assert top_level <= {"shutil", "sys", "pathlib", "typing", "qt", "slicer", "MedSegLensLib"}, top_level
    first_use = ["torch", *(name.replace("-", "_") for name, _ in read_requirements()), "nrrd", "yaml"]
    code = f"import sys, {', '.join(library)}; print(sorted(set({first_use!r}) & set(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert run.returncode == 0 and run.stdout.strip() == "[]", (run.stdout, run.stderr)
    assert "imp" not in top_level
    module_level_calls = [ast.unparse(n) for n in tree.body if isinstance(n, ast.Expr)]
    assert all("pip" not in call for call in module_level_calls)
    source = (ROOT / "MedSegLensLib" / "slicer_module" / "requirements.py").read_text()
    assert "installTorch(askConfirmation=True)" in source and "pip_install" in source, "installed on first use"
    assert "ensure_requirements(" in MODULE_PY.read_text()


def test_on_reload_reloads_the_library_with_importlib():
    widget = next(n for n in module_tree().body if isinstance(n, ast.ClassDef) and n.name == "MedSegLensWidget")
    on_reload = next(n for n in widget.body if isinstance(n, ast.FunctionDef) and n.name == "onReload")
    assert "reload_library()" in ast.unparse(on_reload)


def test_every_widget_the_code_uses_is_in_the_ui_file():
    assert len(WIDGET_SOURCES) > 1, "the panel sections are found"
    used = {name for path in WIDGET_SOURCES for name in re.findall(r"self\.ui\.(\w+)", path.read_text())}
    missing = used - set(ui_widgets())
    assert not missing, f"the widget code uses widgets that MedSegLens.ui lacks: {sorted(missing)}"
    assert {"applyButton", "progressBar", "logTextEdit", "latentTable"} <= used


def test_ui_parameter_names_match_the_parameter_node():
    root = ET.parse(UI_FILE).getroot()
    bound = {p.find("string").text for p in root.iter("property") if p.get("name") == "SlicerParameterName"}
    wrapper = next(n for n in module_tree().body if isinstance(n, ast.ClassDef) and n.name == "MedSegLensParameterNode")
    fields = {n.target.id for n in wrapper.body if isinstance(n, ast.AnnAssign)}
    assert bound == fields


def test_ui_declares_its_custom_widgets():
    root = ET.parse(UI_FILE).getroot()
    declared = {c.find("class").text for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    assert {c for c in used if not c.startswith("Q")} <= declared
    latent_columns = [c.find("property/string").text for c in ui_widgets()["latentTable"].findall("column")]
    assert latent_columns == list(COLUMNS), "the .ui's latent table shows the shared latent browser's columns"


def test_icon_is_a_png():
    assert (MODULE_DIR / "Resources" / "Icons" / "MedSegLens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_root_cmake_describes_a_slicer_extension():
    text = (ROOT / "CMakeLists.txt").read_text()
    values = dict(re.findall(r'set\((EXTENSION_\w+) "([^"]*)"\)', text))
    for key in (
        "EXTENSION_HOMEPAGE",
        "EXTENSION_CATEGORY",
        "EXTENSION_CONTRIBUTORS",
        "EXTENSION_DESCRIPTION",
        "EXTENSION_ICONURL",
        "EXTENSION_SCREENSHOTURLS",
    ):
        assert values.get(key), key
    assert values["EXTENSION_DEPENDS"] == "PyTorch"
    icon = values["EXTENSION_ICONURL"].split("/main/", 1)[1]
    assert (ROOT / icon).is_file(), "the icon URL points at the module icon in this repository"
    for folder in re.findall(r"add_subdirectory\((\w+)\)", text):
        assert (ROOT / folder / "CMakeLists.txt").is_file()


STAND_INS = """
# SlicerMacroStandIns: Slicer's build macros cannot exist without the Slicer SDK;
# these record their arguments so the real cmake can check the module's CMakeLists.
function(record kind base)
  foreach(f ${ARGN})
    file(APPEND ${RECORD} "${kind}|${base}|${f}\\n")
  endforeach()
endfunction()
function(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  record(module ${CMAKE_CURRENT_SOURCE_DIR} ${MY_SCRIPTS} ${MY_RESOURCES})
endfunction()
function(ctkMacroCompilePythonScript)
  cmake_parse_arguments(MY "NO_INSTALL_SUBDIR" "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR"
                        "SCRIPTS;RESOURCES" ${ARGN})
  record(library ${MY_SOURCE_DIR} ${MY_SCRIPTS} ${MY_RESOURCES})
endfunction()
function(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "SCRIPT" "" ${ARGN})
  record(unittest ${CMAKE_CURRENT_SOURCE_DIR} ${MY_SCRIPT})
endfunction()
"""


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_module_cmake_installs_existing_files_and_the_whole_library(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    record = tmp_path / "record.txt"
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\nproject(Check NONE)\n"
        f'set(RECORD "{record.as_posix()}")\nset(BUILD_TESTING ON)\n'
        f"set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/qt-scripted-modules)\n"
        f"set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/qt-scripted-modules)\n"
        f"{STAND_INS}\nadd_subdirectory({MODULE_DIR.as_posix()} module)\n"
    )
    run = subprocess.run(["cmake", "-S", str(project), "-B", str(tmp_path / "build")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    entries = [line.split("|") for line in record.read_text().splitlines()]
    for _, base, name in entries:
        assert (Path(base) / name).is_file(), f"{name} is listed in CMake but does not exist"
    by_kind = {}
    for kind, _base, name in entries:
        by_kind.setdefault(kind, set()).add(name)
    assert by_kind["unittest"] == {"MedSegLens.py"}
    assert {"MedSegLens.py", "Resources/UI/MedSegLens.ui", "Resources/Icons/MedSegLens.png"} <= by_kind["module"]
    library = {p.relative_to(ROOT).as_posix() for p in (ROOT / "MedSegLensLib").rglob("*.py")}
    assert library <= by_kind["library"], "every library file is installed with the module"
    assert "Resources/requirements.txt" in by_kind["library"]
    assert not [n for n in by_kind["module"] if n.endswith(".py") and n != "MedSegLens.py"], (
        "no helper .py directly in the module folder (Slicer would load it as a module)"
    )
    assert sorted(p.name for p in MODULE_DIR.glob("*.py")) == ["MedSegLens.py"]


def test_requirements_match_the_project_and_leave_torch_to_the_pytorch_extension():
    requirements = read_requirements()
    names = {name.lower() for name, _ in requirements}
    assert requirements_file() == ROOT / "Resources" / "requirements.txt"
    assert "torch" not in names and "numpy" not in names
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["scene"]
    declared_names = {re.split(r"[<>=\[ ]", d, maxsplit=1)[0].lower() for d in declared}
    assert names <= declared_names, names - declared_names
    assert {"monai", "nibabel", "safetensors"} <= names


def test_missing_requirements_are_found(tmp_path):
    versions = {"monai": "1.6.1", "scipy": "1.10.0", "tqdm": "4.70.1+local"}

    def installed(name):
        import importlib.metadata

        if name not in versions:
            raise importlib.metadata.PackageNotFoundError(name)
        return versions[name]

    assert missing_requirements(
        [("monai", "1.4"), ("scipy", "1.11"), ("tqdm", "4.66"), ("nibabel", None)], installed
    ) == ["scipy>=1.11", "nibabel"]
    bad = tmp_path / "requirements.txt"
    bad.write_text("monai>=1.4\ntorch @ https://example.org/torch.whl\n")
    from MedSegLensLib.errors import InputError

    with pytest.raises(InputError, match=r"requirements.txt:2: .* is not 'name' or 'name>=version'"):
        read_requirements(bad)
    assert missing_requirements(read_requirements()) == [], "this environment satisfies the Slicer requirements"


def test_reload_library_reloads_loaded_modules():
    """In a subprocess: reloading swaps classes, which would confuse the other tests here."""
    script = (
        "import sys\n"
        "from MedSegLensLib.slicer_module import reloading\n"
        "from MedSegLensLib.worker import protocol\n"
        "old = protocol.Message\n"
        "names = reloading.reload_library()\n"
        "assert 'MedSegLensLib.worker.protocol' in names and names[-1] == 'MedSegLensLib', names\n"
        "assert sys.modules['MedSegLensLib.worker.protocol'].Message is not old\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=subprocess_env())
    assert run.returncode == 0, run.stderr
