"""Reading a triage worklist back (MedSegLensLib.triage.read): the writer's own output, and one-line refusals."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import subprocess_env
from slicer_support import write_test_worklist

from MedSegLensLib.errors import InputError
from MedSegLensLib.triage.read import read_worklist

CASES = [
    {"case_id": "low", "risk": 0.1, "failure": False},
    {
        "case_id": "high",
        "risk": 0.9,
        "failure": True,
        "top_latents": [{"latent": 3, "excess": 0.2, "description": "x"}],
    },
    {"case_id": "mid", "risk": 0.5},
]


def test_the_writers_worklist_reads_back_in_rank_order(tmp_path):
    out = write_test_worklist(tmp_path / "triage", CASES, sae_sha256="abc")
    for path in (out, out / "worklist.json"):  # the folder or its file
        worklist = read_worklist(path)
        assert [case["case_id"] for case in worklist.cases] == ["high", "mid", "low"]
        assert [case["rank"] for case in worklist.cases] == [1, 2, 3]
        assert worklist.header["format"] == "medseglens-triage-worklist" and worklist.sae_sha256 == "abc"
        high = worklist.entry("high")
        assert (high["risk"], high["failure"], high["top_latents"][0]["latent"]) == (0.9, True, 3)
        assert worklist.entry("mid")["failure"] is None and worklist.entry("absent") is None


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "no triage worklist here"),
        ("{not json", "cannot read the triage worklist"),
        ('{"format": "other", "version": 1, "cases": []}', "not a triage worklist"),
        ('{"format": "medseglens-triage-worklist", "version": 7, "cases": []}', "version 7 is not supported"),
        ('{"format": "medseglens-triage-worklist", "version": 1}', 'has no "cases" list'),
        ('{"format": "medseglens-triage-worklist", "version": 1, "cases": [{"case_id": "a"}]}', "lacks rank, risk"),
        (
            '{"format": "medseglens-triage-worklist", "version": 1, '
            '"cases": [{"case_id": "a", "rank": null, "risk": 1, "top_latents": []}]}',
            "not a number",
        ),
    ],
)
def test_a_bad_worklist_is_one_input_error_line(tmp_path, text, message):
    if text is not None:
        (tmp_path / "worklist.json").write_text(text)
    with pytest.raises(InputError) as caught:
        read_worklist(tmp_path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_reader_imports_without_torch_monai_or_scikit_learn():
    """Slicer reads worklists before (or without) its first-use installs; the viewer reads them in its server."""
    probe = (
        "import sys, MedSegLensLib.triage.read; "
        "print(sorted(m for m in ('torch', 'monai', 'sklearn', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=subprocess_env(), capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
