"""The project's own files agree with each other: dependencies declared once, docs free of machine paths,
the README's layout naming every top-level entry."""

from __future__ import annotations

import re
import subprocess

import tomllib
from conftest import ROOT

from MedSegLensLib.worker.requirements import read_requirements

# Base dependencies that Slicer provides itself, so the Slicer requirements file leaves them out.
PROVIDED_BY_SLICER = {
    "torch": "the PyTorch Utils extension installs the build that fits the machine",
    "numpy": "ships with every Slicer",
}
# Machine-specific paths of a development box; docs give repo-relative paths and commands instead.
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|root|home|tmp/venv)\w*/")


def _pyproject_requirements() -> dict[str, str | None]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["scene"]]
    found = {}
    for spec in declared:
        match = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[[^]]*\])?\s*(?:(>=|==)\s*([0-9][0-9A-Za-z.]*))?", spec)
        assert match, f"pyproject.toml: cannot read {spec!r}"
        found[match.group(1).lower()] = match.group(3)
    return found


def test_the_slicer_requirements_are_the_pyproject_dependencies():
    """Resources/requirements.txt (installed inside Slicer) is checked against pyproject.toml, name and minimum."""
    declared = _pyproject_requirements()
    slicer = {name.lower(): minimum for name, minimum in read_requirements(ROOT / "Resources" / "requirements.txt")}
    for name, minimum in slicer.items():
        assert name in declared, f"Resources/requirements.txt names {name}, which pyproject.toml does not declare"
        assert minimum == declared[name], f"{name}: Slicer needs >= {minimum}, pyproject.toml >= {declared[name]}"
    expected = set(declared) - set(PROVIDED_BY_SLICER) - {"slicer-core"}  # slicer-core is Slicer itself
    assert set(slicer) == expected, f"missing in Resources/requirements.txt: {sorted(expected - set(slicer))}"


def test_docs_name_no_paths_of_a_development_machine():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = [
        f"{page.relative_to(ROOT)}:{number}: {line.strip()}"
        for page in pages
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if MACHINE_PATH.search(line)
    ]
    assert not found, "\n".join(found)


def test_the_machine_path_rule_catches_what_it_is_for():
    assert MACHINE_PATH.search("see /work/runs/demo.log") and MACHINE_PATH.search("PY=/tmp/venv0/bin/python")
    assert not MACHINE_PATH.search("runs/demo.log, bench/steering_benchmark.py, docs/slicer.md")


def test_the_readme_layout_lists_every_top_level_entry():
    block = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("```")[1]
    listed = {line.split()[0].rstrip("/") for line in block.splitlines() if line and not line[0].isspace()}
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    top = {path.split("/", 1)[0] for path in tracked.splitlines()}
    top -= {".gitignore", "LICENSE", "README.md", "pyproject.toml", "CMakeLists.txt"}  # the files every repo has
    assert top <= listed, f"not in the README's layout: {sorted(top - listed)}"
