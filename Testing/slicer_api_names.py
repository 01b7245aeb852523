"""Which Slicer API names exist at a Slicer tag, and which names the module's Slicer-process code uses.

The stored lists under `Resources/SlicerAPI/` were extracted from Slicer's own
source (github.com/Slicer/Slicer) with this file:

    python Testing/slicer_api_names.py /path/to/Slicer.git

- `names-v5.10.0.txt`: every name declared at v5.10.0 (the oldest supported
  Slicer) in the C++ headers of Base/, Libs/ and Modules/ (method declarations,
  the Get/Set/On/Off methods of VTK's property macros, enum values) and in the
  Python of Base/Python (functions, classes, module- and class-level names);
  test folders left out.
- `added-after-v5.8.0.txt`: the names of that list that v5.8.0 lacks, so the
  check can also be run against 5.8 (where `vtkSegment::SetTerminology` does
  not exist yet).
The check is an existence check by name (not by class): it catches a call to a
method no Slicer class of that version declares. Names from VTK, Qt and CTK
are not in Slicer's source; they are listed separately (`third-party.txt`,
written by hand from the VTK 9 / Qt 5 / CTK APIs that Slicer 5.10 bundles).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
API_FOLDER = REPO / "Resources" / "SlicerAPI"
MINIMUM_TAG = "v5.10.0"
OLDER_TAG = "v5.8.0"
# The code that runs in Slicer's own process (the worker runs in PythonSlicer but uses no Slicer API).
SLICER_PROCESS_CODE = ("MedSegLens/MedSegLens.py", "MedSegLensLib/slicer_module", "MedSegLensLib/scene")

_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_MACRO = re.compile(r"\bvtk(Set|Get|Boolean)\w*Macro\s*\(\s*(\w+)")
_ENUM = re.compile(r"\benum\b[^{;]*\{([^}]*)\}", re.S)
_ENUM_VALUE = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:=|,|$)", re.M)
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def header_names(text: str) -> set[str]:
    text = _COMMENT.sub("", text)
    names = set(_CALL.findall(text))
    for kind, name in _MACRO.findall(text):
        names |= {f"{name}On", f"{name}Off"} if kind == "Boolean" else {f"Set{name}", f"Get{name}"}
    for body in _ENUM.findall(text):
        names |= set(_ENUM_VALUE.findall(body))
    return names


def python_names(text: str) -> set[str]:
    """Functions, classes and module- or class-level names (not a function's local variables)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return set()
    names = set()
    bodies = [tree.body] + [node.body for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    for statement in (s for body in bodies for s in body):
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(statement.name)
        elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def names_in_source(slicer_git: Path, tag: str) -> set[str]:
    """All names declared in Slicer's source at `tag` (read from a git repository without a work tree)."""
    files = subprocess.run(
        ["git", "-C", str(slicer_git), "ls-tree", "-r", "--name-only", tag], capture_output=True, text=True, check=True
    ).stdout.split()
    names: set[str] = set()
    for path in files:
        if (
            not path.startswith(("Base/", "Libs/", "Modules/"))
            or not path.endswith((".h", ".py"))
            or "/Testing/" in path
            or "/tests/" in path
        ):
            continue
        text = subprocess.run(
            ["git", "-C", str(slicer_git), "show", f"{tag}:{path}"],
            capture_output=True,
            text=True,
            errors="replace",
            check=True,
        ).stdout
        names |= header_names(text) if path.endswith(".h") else python_names(text)
    return names


def _read(name: str) -> set[str]:
    lines = (API_FOLDER / name).read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def names_at(tag: str) -> set[str]:
    """The stored names of a supported tag (v5.10.0) or of v5.8.0, plus VTK/Qt/CTK's."""
    names = _read(f"names-{MINIMUM_TAG}.txt") | _read("third-party.txt")
    if tag == OLDER_TAG:
        return names - _read(f"added-after-{OLDER_TAG}.txt")
    if tag != MINIMUM_TAG:
        raise ValueError(f"no stored names for {tag}")
    return names


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


SLICER_ROOTS = ("slicer", "qt", "ctk", "vtk", "vtkmodules")


def _other_module_roots(tree: ast.AST) -> set[str]:
    """Names bound by `import x` of modules that are not Slicer's, VTK's, Qt's or CTK's (os, numpy, ...)."""
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {
                (a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] not in SLICER_ROOTS
            }
    return roots


def used_names(path: Path, own: set[str] = frozenset()) -> dict[str, int]:
    """Slicer/VTK/Qt/CTK names a file uses -> the first line using each.

    Counted: CamelCase attributes (VTK and MRML methods, classes and constants) except names our own code
    defines (`own`) and attributes of other modules (os, numpy...), and every attribute reached from
    `slicer.`, `qt.`, `ctk.` or `vtk.` (`slicer.util.loadUI`, `slicer.app`).
    """
    tree = ast.parse(path.read_text(), str(path))
    others = _other_module_roots(tree)
    used: dict[str, int] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        root = (_dotted(node) or "").split(".")[0]
        if root in SLICER_ROOTS or (node.attr[:1].isupper() and root not in others and node.attr not in own):
            used.setdefault(node.attr, node.lineno)
    return used


def own_names() -> set[str]:
    """Every name the project's own Python defines (its classes, functions, constants, class attributes)."""
    names: set[str] = set()
    for path in [*(REPO / "MedSegLensLib").rglob("*.py"), REPO / "MedSegLens" / "MedSegLens.py"]:
        names |= python_names(path.read_text())
    return names


def slicer_process_files() -> list[Path]:
    files = []
    for entry in SLICER_PROCESS_CODE:
        path = REPO / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def unknown_names(tag: str, files: list[Path] | None = None) -> dict[str, str]:
    """Names the Slicer-process code uses that do not exist at `tag` -> where each is first used."""
    known, own = names_at(tag), own_names()
    unknown = {}
    for path in files or slicer_process_files():
        for name, line in used_names(path, own).items():
            if name not in known:
                where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
                unknown.setdefault(name, f"{where}:{line}")
    return unknown


def main(slicer_git: str) -> None:
    """Write the stored lists from a Slicer git repository."""
    newest = names_in_source(Path(slicer_git), MINIMUM_TAG)
    older = names_in_source(Path(slicer_git), OLDER_TAG)
    header = f"# names declared in Slicer's source at {MINIMUM_TAG} (Testing/slicer_api_names.py)\n"
    (API_FOLDER / f"names-{MINIMUM_TAG}.txt").write_text(header + "\n".join(sorted(newest)) + "\n")
    added = sorted(newest - older)
    (API_FOLDER / f"added-after-{OLDER_TAG}.txt").write_text(
        f"# names declared at {MINIMUM_TAG} but not at {OLDER_TAG} (Testing/slicer_api_names.py)\n"
        + "\n".join(added)
        + "\n"
    )


if __name__ == "__main__":
    main(sys.argv[1])
